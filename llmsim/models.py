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
    shipped_dir,
    unknown_name,
    validate_data,
)
from llmsim.errors import ConfigError, UnknownNameError

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

    model_config = ConfigDict(extra="forbid", frozen=True)

    kv_lora_rank: int = Field(gt=0)
    q_lora_rank: int | None = Field(default=None, gt=0)
    qk_rope_head_dim: int = Field(gt=0)
    qk_nope_head_dim: int = Field(gt=0)
    v_head_dim: int = Field(gt=0)


class MoEConfig(BaseModel):
    """Mixture of experts in the MLP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_experts: int = Field(gt=1)
    experts_per_token: int = Field(gt=0)
    expert_ffn_size: int = Field(gt=0, description="Intermediate size of one routed expert.")
    num_shared_experts: int = Field(default=0, ge=0)
    first_dense_layers: int = Field(
        default=0, ge=0, description="Leading layers with a dense MLP (of ffn_size) instead."
    )
    layer_step: int = Field(
        default=1,
        ge=1,
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

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    hf_id: str | None = None
    aliases: tuple[str, ...] = ()
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    ffn_size: int = Field(gt=0, description="Dense MLP intermediate size.")
    vocab_size: int = Field(gt=0)
    gated_mlp: bool = True
    attention: Literal["mha", "gqa", "mla"]
    mla: MLAConfig | None = None
    moe: MoEConfig | None = None
    tie_embeddings: bool = False
    max_context: int = Field(default=4096, gt=0)
    weight_dtype: WeightDType = "bf16"
    kv_dtype: KVDType = "bf16"
    published_params_b: float | None = Field(
        default=None, gt=0, description="Parameter count stated by the model's authors, 1e9."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
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
    Qwen3-MoE, DeepSeek-V3, Phi and other decoder-only layouts with the usual key names)."""
    p = Path(path)
    try:
        cfg: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(p)) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON: {exc.msg}", source=str(p), field=f"line {exc.lineno}"
        ) from None
    return validate_data(ModelSpec, hf_config_to_spec(cfg, name or p.parent.name or p.stem), str(p))


def hf_config_to_spec(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """Map Hugging Face config keys to ModelSpec fields (no validation).

    A multimodal config (e.g. Llama 4) nests the language model's keys under ``text_config``;
    they are read from there, and the vision encoder is left out (text serving). The
    quantisation section stays at the top level.
    """
    quant: dict[str, Any] = cfg.get("quantization_config") or {}
    text = cfg.get("text_config")
    if isinstance(text, dict):
        cfg = {**cfg, **text}

    def pick(*keys: str, default: Any = None) -> Any:
        for k in keys:
            if cfg.get(k) is not None:
                return cfg[k]
        return default

    hidden = pick("hidden_size", "n_embd", "d_model")
    heads = pick("num_attention_heads", "n_head")
    kv_heads = pick("num_key_value_heads", "n_kv_head", default=heads)
    head_dim = pick("head_dim", default=(hidden // heads) if hidden and heads else None)
    ffn = pick("intermediate_size", "n_inner", "ffn_dim", default=4 * hidden if hidden else None)
    expert_ffn = pick("moe_intermediate_size", default=ffn)
    model_type = str(cfg.get("model_type", ""))
    llama4 = model_type.startswith("llama4")
    if cfg.get("intermediate_size_mlp") is not None:
        # Llama 4: intermediate_size is the expert's (routed and shared), _mlp the dense MLP's.
        ffn, expert_ffn = cfg["intermediate_size_mlp"], cfg["intermediate_size"]
    act = str(pick("hidden_act", "activation_function", default="silu"))
    # Gemma's MLP is gated too (GeGLU: gelu_pytorch_tanh on the gate)
    gemma = model_type.startswith("gemma")
    gated = act in ("silu", "swiglu") or gemma
    gated = gated or model_type in ("llama", "mistral", "mixtral", "qwen2")
    spec: dict[str, Any] = {
        "name": name,
        "num_layers": pick("num_hidden_layers", "n_layer"),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "ffn_size": ffn,
        "vocab_size": pick("vocab_size"),
        "gated_mlp": gated,
        # Gemma ties its embeddings by default and its config.json leaves the key out
        "tie_embeddings": bool(cfg.get("tie_word_embeddings", gemma)),
        "max_context": pick("max_position_embeddings", "n_positions", default=4096),
    }
    if cfg.get("kv_lora_rank"):
        spec["attention"] = "mla"
        spec["mla"] = {
            "kv_lora_rank": cfg["kv_lora_rank"],
            "q_lora_rank": cfg.get("q_lora_rank"),
            "qk_rope_head_dim": cfg["qk_rope_head_dim"],
            "qk_nope_head_dim": cfg["qk_nope_head_dim"],
            "v_head_dim": cfg["v_head_dim"],
        }
        # MLA has no hidden_size // heads head width: use the query/key head width, so that
        # q_width == num_heads * head_dim as for the other attention types.
        spec["head_dim"] = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
    else:
        spec["attention"] = "mha" if kv_heads == heads else "gqa"
    experts = pick("n_routed_experts", "num_local_experts", "num_experts")
    if experts:
        spec["moe"] = {
            "num_experts": experts,
            "experts_per_token": pick(
                "num_experts_per_tok", "num_experts_per_token", "experts_per_token"
            ),
            "expert_ffn_size": expert_ffn,
            # Llama 4's MoE layers each have one shared expert; its config has no key for it.
            "num_shared_experts": pick("n_shared_experts", default=1 if llama4 else 0),
            "first_dense_layers": pick("first_k_dense_replace", default=0),
            "layer_step": pick("interleave_moe_layer_step", default=1),
        }
    dtype = str(cfg.get("torch_dtype", "bfloat16"))
    weight = {"float16": "fp16", "float32": "fp32"}.get(dtype, "bf16")
    spec["kv_dtype"] = "fp16" if weight == "fp16" else "bf16"
    # Quantised checkpoints keep torch_dtype as the compute type; the stored weights are
    # what quantization_config says.
    spec["weight_dtype"] = quantized_weight_dtype(quant) or weight
    return spec


def quantized_weight_dtype(quant: dict[str, Any]) -> str | None:
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
        weights = [g.get("weights") or {} for g in groups.values() if isinstance(g, dict)]
        # The widest group decides (a mixed checkpoint is rare; bytes are not underestimated).
        sized = [w for w in weights if w.get("num_bits")]
        if sized:
            widest = max(sized, key=lambda w: int(w["num_bits"]))
            bits, kind = int(widest["num_bits"]), str(widest.get("type", "int")).lower()
    if method not in ("awq", "gptq", "compressed-tensors") or bits not in (4, 8):
        return None
    if kind == "float":
        return "fp8" if bits == 8 else "fp4"
    return "int8" if bits == 8 else "int4"
