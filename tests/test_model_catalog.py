"""The shipped model catalog (llmsim/model_catalog/*.yaml) and model lookup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmsim.errors import ConfigError, UnknownNameError
from llmsim.models import (
    ModelSpec,
    catalog_dir,
    from_hf_config,
    get_model,
    hf_config_to_spec,
    list_models,
    quantized_weight_dtype,
)

HF_CONFIGS = Path(__file__).parent / "data" / "hf_configs"

REQUIRED = [
    "Llama-2-7B",
    "Llama-2-13B",
    "Llama-2-70B",
    "Llama-3.1-8B",
    "Llama-3.1-70B",
    "Llama-3.1-405B",
    "Mistral-7B",
    "Mixtral-8x7B",
    "Qwen2.5-7B",
    "Qwen2.5-72B",
    "Qwen3-30B-A3B",
    "DeepSeek-V3",
    "Phi-2",
    "Llama-4-Scout-17B-16E",
    "Llama-4-Scout-17B-16E-FP8",
    # Models with measured profiling data.
    "Llama-3-8B",
    "Llama-3-70B",
    "CodeLlama-34B",
    "InternLM2-20B",
    "Qwen-72B",
    # Models people serve today, each checked against its config.json in tests/data/hf_configs.
    "Llama-3.3-70B",
    "Llama-4-Maverick-17B-128E",
    "Qwen3-8B",
    "Qwen3-14B",
    "Qwen3-32B",
    "Qwen3-235B-A22B",
    "Mistral-Nemo-12B",
    "Mixtral-8x22B",
    "Yi-34B",
    "gpt-oss-20b",
    "gpt-oss-120b",
    "Gemma-2-9B",
    "Gemma-2-27B",
]

# Fields that describe the architecture; a Hugging Face config.json must reproduce them.
ARCH_FIELDS = [
    "num_layers",
    "hidden_size",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "ffn_size",
    "vocab_size",
    "gated_mlp",
    "attention",
    "mla",
    "moe",
    "tie_embeddings",
    "max_context",
]


def by_name() -> dict[str, ModelSpec]:
    return {m.name: m for m in list_models()}


# --- names, aliases, lookup ----------------------------------------------------------------


def test_required_models_are_in_the_catalog():
    names = by_name()
    missing = [n for n in REQUIRED if n not in names]
    assert not missing, f"missing from the catalog: {missing}"
    for n in REQUIRED:
        assert get_model(n).name == n


def test_internlm_20b_name_resolves_to_internlm2_20b():
    # The measured profiles are for internlm/internlm2-20b; the old name is an alias.
    assert get_model("InternLM-20B").name == "InternLM2-20B"
    assert get_model("internlm/internlm2-20b").num_kv_heads == 8


def test_file_names_are_the_lowercase_model_names():
    for path in sorted(catalog_dir().glob("*.yaml")):
        spec = get_model(str(path))
        assert path.stem == spec.name.lower(), path


def test_every_catalog_file_names_its_source_in_a_leading_comment():
    for path in sorted(catalog_dir().glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# "), f"{path.name} has no source comment"
        assert "Source:" in path.read_text(encoding="utf-8"), path.name


def test_every_model_has_hf_id_aliases_and_published_params():
    for m in list_models():
        assert m.hf_id and "/" in m.hf_id, m.name
        assert m.aliases, m.name
        assert m.published_params_b is not None, m.name
        for a in m.aliases:
            assert a == a.lower(), f"{m.name}: alias {a!r} is not lowercase"


def test_names_aliases_and_hf_ids_are_unique_across_models():
    owner: dict[str, str] = {}
    for m in list_models():
        keys = {m.name.lower(), (m.hf_id or "").lower(), *(a.lower() for a in m.aliases)}
        keys.discard("")
        for k in keys:
            assert k not in owner, f"{k!r} is used by both {owner[k]} and {m.name}"
            owner[k] = m.name


def test_aliases_and_hf_ids_resolve_to_their_model():
    for m in list_models():
        assert get_model(m.hf_id).name == m.name
        assert get_model(m.hf_id.upper()).name == m.name
        for a in m.aliases:
            assert get_model(a).name == m.name, a


@pytest.mark.parametrize(
    "key",
    [
        "llama-3.1-8b",
        "LLAMA-3.1-8B",
        "llama3.1-8b",
        "Llama-3.1-8B-Instruct",
        "meta-llama/Llama-3.1-8B",
        "meta-llama/Meta-Llama-3.1-8B-Instruct",
    ],
)
def test_lookup_is_case_insensitive(key):
    assert get_model(key).name == "Llama-3.1-8B"


def test_llama3_and_llama31_are_distinct():
    assert get_model("llama3-8b").name == "Llama-3-8B"
    assert get_model("llama3.1-8b").name == "Llama-3.1-8B"
    assert get_model("Llama-3-8B").max_context == 8192
    assert get_model("Llama-3.1-8B").max_context == 131072


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError) as info:
        get_model("Llama-3.1-8X")
    msg = str(info.value)
    assert "did you mean" in msg
    assert "llama-3.1-8" in msg.lower()


# --- parameter counts ----------------------------------------------------------------------


@pytest.mark.parametrize("name", REQUIRED)
def test_derived_params_match_published(name):
    m = get_model(name)
    assert m.published_params_b is not None
    derived = m.num_params / 1e9
    rel = abs(derived - m.published_params_b) / m.published_params_b
    assert rel <= 0.03, f"{name}: derived {derived:.3f}B vs published {m.published_params_b}B"


@pytest.mark.parametrize(
    "name, active_b",
    [
        ("Mixtral-8x7B", 12.9),
        ("Qwen3-30B-A3B", 3.3),
        ("DeepSeek-V3", 37.0),
        ("Llama-4-Scout-17B-16E", 17.0),
        ("Llama-4-Maverick-17B-128E", 17.0),
        ("Qwen3-235B-A22B", 22.0),
        ("Mixtral-8x22B", 39.0),
    ],
)
def test_moe_active_params(name, active_b):
    m = get_model(name)
    active = m.num_active_params / 1e9
    assert abs(active - active_b) / active_b <= 0.05, f"{name}: active {active:.2f}B"
    assert m.num_active_params < m.num_params


def test_dense_models_activate_everything():
    for m in list_models():
        if m.moe is None:
            assert m.num_active_params == m.num_params, m.name


def test_deepseek_v3_weights_are_fp8():
    m = get_model("DeepSeek-V3")
    assert m.weight_dtype == "fp8" and m.kv_dtype == "bf16"
    assert m.weight_bytes == pytest.approx(671e9, rel=0.01)


def test_phi2_is_a_plain_mlp_and_qwen25_7b_is_untied():
    assert get_model("Phi-2").gated_mlp is False
    assert get_model("Phi-2").tie_embeddings is False
    assert get_model("Qwen2.5-7B").tie_embeddings is False


# --- KV cache sizes ------------------------------------------------------------------------


def test_kv_bytes_llama31_8b():
    # 32 layers * (K and V) * 8 KV heads * 128 * 2 bytes
    assert get_model("Llama-3.1-8B").kv_bytes_per_token == 32 * 2 * 8 * 128 * 2 == 131072


def test_kv_bytes_deepseek_v3_is_the_mla_latent():
    m = get_model("DeepSeek-V3")
    assert m.kv_bytes_per_token == 61 * (512 + 64) * 2
    # The latent is not split across heads: every GPU holds all of it.
    assert m.kv_bytes_per_token_per_gpu(8) == m.kv_bytes_per_token


def test_kv_bytes_per_gpu_under_tensor_parallelism():
    m = get_model("Llama-3.1-70B")
    total = m.kv_bytes_per_token
    assert total == 80 * 2 * 8 * 128 * 2
    assert m.kv_bytes_per_token_per_gpu(1) == total
    assert m.kv_bytes_per_token_per_gpu(8) == total / 8
    # 8 KV heads over 16 GPUs: each GPU still holds (a replica of) one KV head.
    assert m.kv_bytes_per_token_per_gpu(16) == total / 8 == 80 * 2 * 1 * 128 * 2


# --- Hugging Face config.json fixtures -----------------------------------------------------


def fixture_dirs() -> list[str]:
    return sorted(p.parent.name for p in HF_CONFIGS.glob("*/config.json"))


def test_fixtures_cover_the_required_ones():
    assert {"Llama-3.1-8B", "Mixtral-8x7B", "DeepSeek-V3"} <= set(fixture_dirs())


@pytest.mark.parametrize("name", fixture_dirs())
def test_hf_config_matches_catalog(name):
    from_hf = from_hf_config(HF_CONFIGS / name / "config.json")
    assert from_hf.name == name  # named after its folder
    catalog = get_model(name)
    diffs = {
        f: (getattr(from_hf, f), getattr(catalog, f))
        for f in ARCH_FIELDS
        if getattr(from_hf, f) != getattr(catalog, f)
    }
    assert not diffs, f"{name}: config.json vs catalog differ: {diffs}"
    assert from_hf.num_params == catalog.num_params
    assert from_hf.kv_elements_per_token_per_layer == catalog.kv_elements_per_token_per_layer
    assert from_hf.weight_bytes == catalog.weight_bytes  # quantised checkpoints included


def test_hf_config_via_get_model_path():
    spec = get_model(str(HF_CONFIGS / "Mixtral-8x7B" / "config.json"))
    assert spec.moe is not None and spec.moe.num_experts == 8 and spec.moe.experts_per_token == 2


# --- invalid model files -------------------------------------------------------------------


def good_yaml() -> str:
    return (
        "name: Tiny\n"
        "num_layers: 2\n"
        "hidden_size: 64\n"
        "num_heads: 4\n"
        "num_kv_heads: 2\n"
        "head_dim: 16\n"
        "ffn_size: 128\n"
        "vocab_size: 1000\n"
        "attention: gqa\n"
    )


def test_a_valid_user_model_file_loads(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(good_yaml(), encoding="utf-8")
    spec = get_model(str(path))
    assert spec.name == "Tiny" and spec.num_kv_heads == 2


def test_unknown_field_is_a_config_error_naming_the_file(tmp_path):
    path = tmp_path / "bad_field.yaml"
    path.write_text(good_yaml() + "num_expertz: 8\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        get_model(str(path))
    msg = str(info.value)
    assert str(path) in msg
    assert "num_expertz" in msg


def test_heads_not_a_multiple_of_kv_heads_is_a_config_error_naming_the_file(tmp_path):
    path = tmp_path / "bad_heads.yaml"
    path.write_text(good_yaml().replace("num_kv_heads: 2", "num_kv_heads: 3"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        get_model(str(path))
    msg = str(info.value)
    assert str(path) in msg
    assert "num_kv_heads" in msg


def test_hf_config_reads_fp8_quantization():
    """DeepSeek-V3's config says torch_dtype bfloat16 but stores fp8 weights."""
    spec = from_hf_config(HF_CONFIGS / "DeepSeek-V3" / "config.json")
    assert spec.weight_dtype == "fp8"
    assert spec.weight_bytes == pytest.approx(get_model("DeepSeek-V3").weight_bytes)


# --- Llama 4 and quantised checkpoints -------------------------------------------------------

SHARED_CONFIGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "model_configs"


def test_llama4_scout_fp8_config_reads_text_config_moe_and_fp8():
    """Llama-4-Scout (RedHatAI FP8-dynamic): keys under text_config, 16 experts top-1 plus a
    shared expert in each of the 48 layers, compressed-tensors float 8-bit weights.
    Attention 48 x 62,914,560 = 3.02B; experts 48 x 17 x 3 x 5,120 x 8,192 = 102.8B (+ routers
    3.9M); embeddings 2 x 202,048 x 5,120 = 2.07B: 107.8B total, 17.2B active."""
    m = from_hf_config(HF_CONFIGS / "Llama-4-Scout-17B-16E-FP8" / "config.json")
    assert (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads) == (48, 5120, 40, 8)
    assert m.moe is not None
    assert (m.moe.num_experts, m.moe.experts_per_token, m.moe.num_shared_experts) == (16, 1, 1)
    assert (m.moe.expert_ffn_size, m.ffn_size, m.num_moe_layers) == (8192, 16384, 48)
    assert m.num_params == 107_769_364_480
    assert m.num_active_params == 17_172_398_080
    assert m.weight_dtype == "fp8" and m.kv_dtype == "bf16"
    assert m.weight_bytes == m.num_params  # one byte a weight
    assert get_model("llama-4-scout-17b-16e-instruct-fp8-dynamic").weight_dtype == "fp8"
    assert get_model("Llama-4-Scout").weight_dtype == "bf16"


def test_interleaved_moe_layers_alternate_with_dense_ones():
    """interleave_moe_layer_step 2 (Llama-4-Maverick's layout): every second layer has
    experts, the others a dense MLP of intermediate_size_mlp."""
    cfg = json.loads((HF_CONFIGS / "Llama-4-Scout-17B-16E-FP8" / "config.json").read_text())
    cfg["text_config"]["interleave_moe_layer_step"] = 2
    m = ModelSpec.model_validate(hf_config_to_spec(cfg, "maverick-like"))
    assert m.num_moe_layers == 24
    scout = get_model("Llama-4-Scout-17B-16E")
    dense = 24 * 3 * 5120 * 16384
    assert m.num_params == scout.num_params - 24 * scout.mlp_params_total() // 48 + dense


@pytest.mark.parametrize(
    "quant, dtype",
    [
        ({"quant_method": "fp8"}, "fp8"),
        ({"quant_method": "awq", "bits": 4}, "int4"),
        ({"quant_method": "gptq", "bits": 8}, "int8"),
        ({"quant_method": "modelopt", "quant_algo": "FP8"}, "fp8"),
        ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "fp4"),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}},
            },
            "fp8",
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"g": {"weights": {"num_bits": 8, "type": "int"}}},
            },
            "int8",
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int"}}},
            },
            "int4",
        ),
        ({"quant_method": "bitsandbytes"}, None),
        ({}, None),
    ],
)
def test_quantization_config_gives_the_stored_weight_type(quant, dtype):
    assert quantized_weight_dtype(quant) == dtype


@pytest.mark.skipif(not SHARED_CONFIGS.is_dir(), reason="shared model configs not present")
@pytest.mark.parametrize(
    "folder",
    sorted(p.parent.name for p in SHARED_CONFIGS.glob("*/config.json"))
    if SHARED_CONFIGS.is_dir()
    else [],
)
def test_every_shared_model_config_loads(folder):
    m = from_hf_config(SHARED_CONFIGS / folder / "config.json")
    assert 1e9 < m.num_params < 2e11
    assert m.num_active_params <= m.num_params
    # the catalog entry of the same model, where there is one, agrees on the architecture
    try:
        catalog = get_model(folder)
    except UnknownNameError:
        return
    assert catalog.num_params == pytest.approx(m.num_params, rel=0.01), folder
    assert catalog.kv_elements_per_token_per_layer == m.kv_elements_per_token_per_layer


# --- models people serve today ------------------------------------------------------------


def test_unknown_hugging_face_id_says_how_to_use_its_config_json():
    with pytest.raises(UnknownNameError) as info:
        get_model("acme-ai/Acme-7B-Chat")
    msg = str(info.value)
    assert "did you mean" not in msg
    assert "https://huggingface.co/acme-ai/Acme-7B-Chat/blob/main/config.json" in msg
    assert "model: path/to/config.json" in msg and msg.startswith("model: ")


def test_gemma_configs_are_gated_and_tied_by_default():
    # Gemma 2's config.json names a GELU activation (GeGLU is still gated) and leaves out
    # tie_word_embeddings, whose Gemma default is true.
    m = from_hf_config(HF_CONFIGS / "Gemma-2-9B" / "config.json")
    assert m.gated_mlp and m.tie_embeddings
    assert m.embedding_params() == 256000 * 3584
    assert m.kv_bytes_per_token == 42 * 2 * 8 * 256 * 2


def test_gpt_oss_reads_mxfp4_experts_and_its_expert_count():
    m = from_hf_config(HF_CONFIGS / "gpt-oss-120b" / "config.json")
    assert m.weight_dtype == "fp4"
    assert m.moe is not None and (m.moe.num_experts, m.moe.experts_per_token) == (128, 4)
    assert m.kv_bytes_per_token == 36 * 2 * 8 * 64 * 2
    assert m.weight_bytes == pytest.approx(116.8e9 / 2, rel=0.01)


def test_maverick_interleaves_moe_and_dense_layers():
    m = get_model("llama-4-maverick")
    assert m.moe is not None and m.moe.layer_step == 2 and m.num_moe_layers == 24
    scout = get_model("llama-4-scout")
    assert scout.num_moe_layers == 48


def test_a_model_folder_reads_its_config_json():
    folder = HF_CONFIGS / "Qwen3-8B"
    assert get_model(str(folder)).num_params == get_model("Qwen/Qwen3-8B").num_params
