"""Model architectures: the shipped catalog (``llmsim/model_catalog/*.yaml``), user YAML files
and Hugging Face ``config.json`` files.

A :class:`ModelSpec` holds what the cost model and the KV cache need: layer count, widths,
attention heads and type (MHA, GQA, MLA), MLP or mixture-of-experts sizes, vocabulary, and the
data types of weights and KV cache. Parameter counts and KV bytes per token are derived here.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmsim.config_io import (
    find,
    load_catalog,
    load_model_file,
    read_text,
    shipped_dir,
    unknown_name,
    validate_data,
)
from llmsim.errors import ConfigError, UnknownNameError
from llmsim.limits import MAX_MODEL_DIM

WeightDType = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4", "fp4"]
KVDType = Literal["fp32", "bf16", "fp16", "fp8", "int8"]

KVCacheDType = Literal["auto", "bf16", "fp16", "fp8", "fp8_e4m3", "fp8_e5m2"]
"""Scenario ``engine.kv_cache_dtype``: vLLM's ``--kv-cache-dtype`` values (auto: the model's)."""

Quantization = Literal["auto", "fp8", "int8", "int4", "fp4"]
"""Scenario ``engine.quantization``: the stored weight type (auto: the model's)."""

DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "fp4": 0.5,
}


class MLAConfig(BaseModel):
    """Multi-head latent attention (DeepSeek-V2/V3): the KV cache holds a compressed latent."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kv_lora_rank: int = Field(gt=0, le=MAX_MODEL_DIM)
    q_lora_rank: int | None = Field(default=None, gt=0, le=MAX_MODEL_DIM)
    qk_rope_head_dim: int = Field(gt=0, le=MAX_MODEL_DIM)
    qk_nope_head_dim: int = Field(gt=0, le=MAX_MODEL_DIM)
    v_head_dim: int = Field(gt=0, le=MAX_MODEL_DIM)


class MoEConfig(BaseModel):
    """Mixture of experts in the MLP."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    num_experts: int = Field(gt=1, le=MAX_MODEL_DIM)
    experts_per_token: int = Field(gt=0, le=MAX_MODEL_DIM)
    expert_ffn_size: int = Field(
        gt=0, le=MAX_MODEL_DIM, description="Intermediate size of one routed expert."
    )
    num_shared_experts: int = Field(default=0, ge=0, le=MAX_MODEL_DIM)
    first_dense_layers: int = Field(
        default=0,
        ge=0,
        le=MAX_MODEL_DIM,
        description="Leading layers with a dense MLP (of ffn_size) instead.",
    )
    layer_step: int = Field(
        default=1,
        ge=1,
        le=MAX_MODEL_DIM,
        description="Of the layers after first_dense_layers, every layer_step-th has experts and "
        "the others a dense MLP (Llama 4's interleave_moe_layer_step; 1: every layer).",
    )

    @model_validator(mode="after")
    def _k_le_e(self) -> MoEConfig:
        if self.experts_per_token > self.num_experts:
            raise ValueError("experts_per_token must not exceed num_experts")
        return self


class ModelSpec(BaseModel):
    """A transformer decoder's architecture."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    hf_id: str | None = None
    aliases: tuple[str, ...] = ()
    num_layers: int = Field(gt=0, le=MAX_MODEL_DIM)
    hidden_size: int = Field(gt=0, le=MAX_MODEL_DIM)
    num_heads: int = Field(gt=0, le=MAX_MODEL_DIM)
    num_kv_heads: int = Field(gt=0, le=MAX_MODEL_DIM)
    head_dim: int = Field(gt=0, le=MAX_MODEL_DIM)
    ffn_size: int = Field(gt=0, le=MAX_MODEL_DIM, description="Dense MLP intermediate size.")
    vocab_size: int = Field(gt=0, le=MAX_MODEL_DIM)
    gated_mlp: bool = True
    attention: Literal["mha", "gqa", "mla"]
    mla: MLAConfig | None = None
    moe: MoEConfig | None = None
    tie_embeddings: bool = False
    max_context: int = Field(default=4096, gt=0, le=MAX_MODEL_DIM)
    weight_dtype: WeightDType = "bf16"
    kv_dtype: KVDType = "bf16"
    published_params_b: float | None = Field(
        default=None, gt=0, description="Parameter count stated by the model's authors, 1e9."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                f"({self.num_kv_heads})"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must divide hidden_size ({self.hidden_size})"
            )
        if self.moe is not None and self.num_moe_layers < 1:
            m = self.moe
            raise ValueError(
                f"no layer has experts: num_layers {self.num_layers}, moe.first_dense_layers "
                f"{m.first_dense_layers}, moe.layer_step {m.layer_step}; a mixture of experts "
                "needs num_layers - first_dense_layers >= layer_step"
            )
        if self.attention == "mha" and self.num_kv_heads != self.num_heads:
            raise ValueError("attention 'mha' needs num_kv_heads == num_heads")
        if self.attention == "gqa" and self.num_kv_heads == self.num_heads:
            raise ValueError("attention 'gqa' needs num_kv_heads < num_heads (use 'mha')")
        if (self.attention == "mla") != (self.mla is not None):
            raise ValueError("attention 'mla' and an 'mla' section go together")
        return self

    # --- derived sizes ---------------------------------------------------------------------

    @property
    def weight_bytes_per_param(self) -> float:
        return DTYPE_BYTES[self.weight_dtype]

    @property
    def kv_bytes_per_element(self) -> float:
        return DTYPE_BYTES[self.kv_dtype]

    @property
    def q_width(self) -> int:
        """Width of the query projection output."""
        if self.mla is not None:
            return self.num_heads * (self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim)
        return self.num_heads * self.head_dim

    def attention_params(self) -> int:
        """Weights of one layer's attention block (projections only)."""
        h = self.hidden_size
        if self.mla is not None:
            m = self.mla
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            if m.q_lora_rank:
                q = h * m.q_lora_rank + m.q_lora_rank * self.num_heads * qk
            else:
                q = h * self.num_heads * qk
            kv_down = h * (m.kv_lora_rank + m.qk_rope_head_dim)
            kv_up = m.kv_lora_rank * self.num_heads * (m.qk_nope_head_dim + m.v_head_dim)
            out = self.num_heads * m.v_head_dim * h
            return q + kv_down + kv_up + out
        q = h * self.num_heads * self.head_dim
        kv = 2 * h * self.num_kv_heads * self.head_dim
        out = self.num_heads * self.head_dim * h
        return q + kv + out

    def dense_mlp_params(self, ffn: int | None = None) -> int:
        f = self.ffn_size if ffn is None else ffn
        return (3 if self.gated_mlp else 2) * self.hidden_size * f

    @property
    def num_moe_layers(self) -> int:
        if self.moe is None:
            return 0
        return (self.num_layers - self.moe.first_dense_layers) // self.moe.layer_step

    def mlp_params_total(self) -> int:
        """All MLP weights of the model (every expert counted)."""
        if self.moe is None:
            return self.num_layers * self.dense_mlp_params()
        m = self.moe
        expert = self.dense_mlp_params(m.expert_ffn_size)
        per_moe_layer = (m.num_experts + m.num_shared_experts) * expert
        per_moe_layer += self.hidden_size * m.num_experts  # router
        dense = (self.num_layers - self.num_moe_layers) * self.dense_mlp_params()
        return dense + self.num_moe_layers * per_moe_layer

    def embedding_params(self) -> int:
        factor = 1 if self.tie_embeddings else 2
        return factor * self.vocab_size * self.hidden_size

    @property
    def num_params(self) -> int:
        """Total parameters (norms ignored: they are a rounding error)."""
        return (
            self.num_layers * self.attention_params()
            + self.mlp_params_total()
            + self.embedding_params()
        )

    @property
    def num_active_params(self) -> int:
        """Parameters touched per token (routed experts: only the active ones)."""
        if self.moe is None:
            return self.num_params
        m = self.moe
        expert = self.dense_mlp_params(m.expert_ffn_size)
        inactive = (m.num_experts - m.experts_per_token) * expert
        return self.num_params - self.num_moe_layers * inactive

    @property
    def weight_bytes(self) -> float:
        return self.num_params * self.weight_bytes_per_param

    @property
    def kv_elements_per_token_per_layer(self) -> int:
        """Elements stored in the KV cache per token per layer (K and V together)."""
        if self.mla is not None:
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    @property
    def kv_bytes_per_token(self) -> float:
        """KV cache bytes per token, all layers, whole model (before tensor parallelism)."""
        return self.num_layers * self.kv_elements_per_token_per_layer * self.kv_bytes_per_element

    def with_dtypes(
        self, kv_cache_dtype: KVCacheDType = "auto", quantization: Quantization = "auto"
    ) -> ModelSpec:
        """This model served with another KV cache type and/or stored weight type (``auto``
        keeps the model's own). fp8_e4m3 and fp8_e5m2 are both one-byte fp8."""
        update: dict[str, str] = {}
        if kv_cache_dtype != "auto":
            update["kv_dtype"] = "fp8" if kv_cache_dtype.startswith("fp8") else kv_cache_dtype
        if quantization != "auto":
            update["weight_dtype"] = quantization
        return self.model_copy(update=update) if update else self

    def kv_bytes_per_token_per_gpu(self, tp: int) -> float:
        """Per GPU under tensor parallelism: KV heads are split, never below one per GPU.

        MLA's latent is not split across heads, so every GPU holds all of it.
        """
        if self.mla is not None:
            return self.kv_bytes_per_token
        heads_per_gpu = max(1, -(-self.num_kv_heads // tp))
        return self.num_layers * 2 * heads_per_gpu * self.head_dim * self.kv_bytes_per_element


# --- catalog -----------------------------------------------------------------------------


def catalog_dir() -> Path:
    return shipped_dir("model_catalog")


@cache
def _catalog() -> dict[str, ModelSpec]:
    return load_catalog(ModelSpec, catalog_dir())


def list_models() -> list[ModelSpec]:
    return list(_catalog().values())


def get_model(name: str, *, source: str | None = None, field: str = "model") -> ModelSpec:
    """A catalog model by name, alias or Hugging Face id (case-insensitive), or a file path.

    A path may point at a llmsim model YAML, a Hugging Face ``config.json`` or a folder holding
    one (a downloaded model). A Hugging Face id the catalog lacks is refused with how to use its
    ``config.json`` instead.
    """
    catalog = _catalog()
    found = find(catalog, name, lambda spec: spec.hf_id)
    if found is not None:
        return found
    if name.endswith((".yaml", ".yml")):
        return load_model_file(ModelSpec, Path(name))
    if name.endswith(".json"):
        return from_hf_config(Path(name))
    if (Path(name) / "config.json").is_file():  # a downloaded model folder
        return from_hf_config(Path(name) / "config.json")
    if "/" in name.strip("/") and not Path(name).exists():
        # A Hugging Face id the catalog lacks: a did-you-mean would name an unrelated model.
        raise UnknownNameError(
            f"'{name}' is not in the model catalog (llmsim models lists it); for a Hugging Face "
            f"model, download its config.json (https://huggingface.co/{name.strip('/')}/blob/main/"
            "config.json) and set model: path/to/config.json",
            source=source,
            field=field,
        )
    hint = " (or a path to a model .yaml or a Hugging Face config.json)"
    msg = unknown_name("model", name, catalog, hint)
    raise UnknownNameError(msg, source=source, field=field)


def from_hf_config(path: str | Path, name: str | None = None) -> ModelSpec:
    """Build a ModelSpec from a Hugging Face ``config.json`` (Llama, Mistral, Mixtral, Qwen2,
    Qwen3-MoE, DeepSeek-V3, Phi and other decoder-only layouts with the usual key names).

    A missing key or a bad value is a ConfigError naming the file and the config.json key."""
    p = Path(path)
    text = read_text(p)
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON: {exc.msg}", source=str(p), field=f"line {exc.lineno}"
        ) from None
    except RecursionError:
        raise ConfigError("invalid JSON: nested too deeply", source=str(p)) from None
    if not isinstance(cfg, dict):
        raise ConfigError(
            f"expected a JSON object of settings, got {type(cfg).__name__}", source=str(p)
        )
    keys: dict[str, str] = {}
    spec = hf_config_to_spec(cfg, name or p.parent.name or p.stem, source=str(p), keys=keys)
    try:
        return validate_data(ModelSpec, spec, str(p))
    except ConfigError as exc:
        # Name the config.json key the bad value came from, not llmsim's field.
        if exc.field in keys:
            raise ConfigError(exc.reason, source=str(p), field=keys[exc.field]) from None
        raise


_HF_KEYS: dict[str, tuple[str, ...]] = {
    "num_layers": ("num_hidden_layers", "n_layer"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_heads": ("num_attention_heads", "n_head"),
    "num_kv_heads": ("num_key_value_heads", "n_kv_head"),
    "head_dim": ("head_dim",),
    "ffn_size": ("intermediate_size", "n_inner", "ffn_dim"),
    "vocab_size": ("vocab_size",),
    "max_context": ("max_position_embeddings", "n_positions"),
}
"""config.json keys that give each ModelSpec field, in the order they are looked for."""


def hf_config_to_spec(
    cfg: dict[str, Any],
    name: str,
    *,
    source: str | None = None,
    keys: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Map Hugging Face config keys to ModelSpec fields (ModelSpec validates the result).

    A multimodal config (e.g. Llama 4) nests the language model's keys under ``text_config``;
    they are read from there, and the vision encoder is left out (text serving). The
    quantisation section stays at the top level. A required key that is missing, or a size
    that is not a positive integer, is a ConfigError naming the key; ``keys`` (when given)
    receives the key each field was read from.
    """
    used: dict[str, str] = {} if keys is None else keys
    quant = cfg.get("quantization_config") or {}
    if not isinstance(quant, dict):
        raise _bad("quantization_config", quant, "must be an object", source)
    text = cfg.get("text_config")
    if isinstance(text, dict):
        cfg = {**cfg, **text}

    def pick(field: str, *names: str, default: Any = None) -> Any:
        for k in names:
            if cfg.get(k) is not None:
                used[field] = k
                return cfg[k]
        return default

    def size(field: str, *names: str, default: Any = None, required: bool = True) -> Any:
        names = names or _HF_KEYS[field]
        v = pick(field, *names, default=default)
        if v is None:
            if required:
                alt = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
                raise ConfigError(
                    f"required key is missing{alt}: every decoder model gives it",
                    source=source,
                    field=names[0],
                )
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_MODEL_DIM:
            raise _bad(
                used.get(field, names[0]),
                v,
                f"must be a whole number from 1 to {MAX_MODEL_DIM:,}",
                source,
            )
        return v

    hidden = size("hidden_size")
    heads = size("num_heads")
    kv_heads = size("num_kv_heads", default=heads)
    if cfg.get("head_dim") is None and hidden % heads:
        raise ConfigError(
            f"num_attention_heads ({heads}) must divide hidden_size ({hidden}) when the "
            "config gives no head_dim",
            source=source,
            field=used["num_heads"],
        )
    head_dim = size("head_dim", default=hidden // heads)
    ffn = size("ffn_size", default=4 * hidden)
    expert_ffn = size("moe.expert_ffn_size", "moe_intermediate_size", default=ffn)
    model_type = str(cfg.get("model_type", ""))
    llama4 = model_type.startswith("llama4")
    if cfg.get("intermediate_size_mlp") is not None:
        # Llama 4: intermediate_size is the expert's (routed and shared), _mlp the dense MLP's.
        ffn = size("ffn_size", "intermediate_size_mlp")
        expert_ffn = size("moe.expert_ffn_size", "intermediate_size")
    act = str(pick("act", "hidden_act", "activation_function", default="silu"))
    # Gemma's MLP is gated too (GeGLU: gelu_pytorch_tanh on the gate)
    gemma = model_type.startswith("gemma")
    gated = act in ("silu", "swiglu") or gemma
    gated = gated or model_type in ("llama", "mistral", "mixtral", "qwen2")
    spec: dict[str, Any] = {
        "name": name,
        "num_layers": size("num_layers"),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "ffn_size": ffn,
        "vocab_size": size("vocab_size"),
        "gated_mlp": gated,
        # Gemma ties its embeddings by default and its config.json leaves the key out
        "tie_embeddings": bool(cfg.get("tie_word_embeddings", gemma)),
        "max_context": size("max_context", default=4096),
    }
    if cfg.get("kv_lora_rank"):
        spec["attention"] = "mla"
        mla = {
            f: size(f"mla.{f}", f, required=f != "q_lora_rank")
            for f in ("kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim")
        }
        mla["v_head_dim"] = size("mla.v_head_dim", "v_head_dim")
        spec["mla"] = mla
        # MLA has no hidden_size // heads head width: use the query/key head width, so that
        # q_width == num_heads * head_dim as for the other attention types.
        spec["head_dim"] = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
    else:
        spec["attention"] = "mha" if kv_heads == heads else "gqa"
    expert_keys = ("n_routed_experts", "num_local_experts", "num_experts")
    experts = pick("moe.num_experts", *expert_keys)
    per_token_keys = ("num_experts_per_tok", "num_experts_per_token", "experts_per_token")
    per_token = pick("moe.experts_per_token", *per_token_keys)
    if experts or per_token:
        # A key present with 0 experts but experts per token is a broken MoE, not a dense model.
        spec["moe"] = {
            "num_experts": size("moe.num_experts", *expert_keys),
            "experts_per_token": size("moe.experts_per_token", *per_token_keys),
            "expert_ffn_size": expert_ffn,
            # Llama 4's MoE layers each have one shared expert; its config has no key for it.
            "num_shared_experts": pick(
                "moe.num_shared_experts", "n_shared_experts", default=1 if llama4 else 0
            ),
            "first_dense_layers": pick(
                "moe.first_dense_layers", "first_k_dense_replace", default=0
            ),
            "layer_step": pick("moe.layer_step", "interleave_moe_layer_step", default=1),
        }
    dtype = str(cfg.get("torch_dtype", "bfloat16"))
    weight = {"float16": "fp16", "float32": "fp32"}.get(dtype, "bf16")
    spec["kv_dtype"] = "fp16" if weight == "fp16" else "bf16"
    # Quantised checkpoints keep torch_dtype as the compute type; the stored weights are
    # what quantization_config says.
    spec["weight_dtype"] = quantized_weight_dtype(quant, source) or weight
    return spec


def _bad(key: str, value: Any, reason: str, source: str | None) -> ConfigError:
    shown = json.dumps(value) if not isinstance(value, str) else repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return ConfigError(f"{reason} (got {shown})", source=source, field=key)


def quantized_weight_dtype(quant: dict[str, Any], source: str | None = None) -> str | None:
    """The stored weight type a Hugging Face ``quantization_config`` describes, or None.

    ``fp8`` (e.g. DeepSeek-V3), ``mxfp4`` (gpt-oss), ``compressed-tensors`` (llm-compressor:
    each config group's ``weights.num_bits`` and ``type``, ``float`` or ``int``), ``modelopt``
    (``quant_algo``) and the integer methods (AWQ, GPTQ: ``bits``).
    """
    method = str(quant.get("quant_method", "")).lower()
    if method == "fp8":
        return "fp8"
    if method == "mxfp4":  # gpt-oss: the experts (nearly all weights) in MXFP4
        return "fp4"
    if method == "modelopt":
        algo = str(quant.get("quant_algo", "")).upper()
        return {"FP8": "fp8", "NVFP4": "fp4"}.get(algo)
    bits = quant.get("bits") or quant.get("w_bit")
    kind = "int"
    if method == "compressed-tensors":
        groups = quant.get("config_groups") or {}
        if not isinstance(groups, dict):
            raise _bad("quantization_config.config_groups", groups, "must be an object", source)
        weights = [g.get("weights") or {} for g in groups.values() if isinstance(g, dict)]
        # The widest group decides (a mixed checkpoint is rare; bytes are not underestimated).
        sized = [w for w in weights if isinstance(w, dict) and w.get("num_bits")]
        for w in sized:
            if isinstance(w["num_bits"], bool) or not isinstance(w["num_bits"], int):
                key = "quantization_config.config_groups.weights.num_bits"
                raise _bad(key, w["num_bits"], "must be a whole number of bits", source)
        if sized:
            widest = max(sized, key=lambda w: int(w["num_bits"]))
            bits, kind = int(widest["num_bits"]), str(widest.get("type", "int")).lower()
    if method not in ("awq", "gptq", "compressed-tensors") or bits not in (4, 8):
        return None
    if kind == "float":
        return "fp8" if bits == 8 else "fp4"
    return "int8" if bits == 8 else "int4"
