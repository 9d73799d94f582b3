#!/usr/bin/env python3
"""Write the small GGUF and safetensors fixtures of the XLFormats tests.

The expected values come from the `gguf` Python package (gguf.quants.dequantize), which is
independent of the Swift dequantizers under test. Output goes to
Tests/XLFormatsTests/Resources:

  quant_types.gguf          one tensor per ggml type (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q4_K Q5_K
                            Q6_K), metadata of every value type, and a tiny llama layer whose
                            attn_q/attn_k rows carry llama.cpp's rotary permutation
  quant_types.safetensors   float32 expectations: each type's dequantized values under the
                            type name, and the un-permuted attention weights under their
                            Hugging Face names
  aligned64.gguf            two tensors with general.alignment = 64

Usage: python3 scripts/make_format_fixtures.py [--seed N]

With --model-expectations MODEL.gguf OUT.safetensors it instead writes, for a real llama GGUF,
the float32 Hugging Face layout of a few tensors (layer 0 attention and MLP down projection,
norms, the first 8 embedding rows under "model.embed_tokens.weight[:8]"), for the test that
runs when XLLAMA_MODEL and XLLAMA_MODEL_EXPECTED are set.
"""
import argparse
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

OUT = Path(__file__).resolve().parent.parent / "Tests" / "XLFormatsTests" / "Resources"

HEAD_COUNT = 4
HEAD_COUNT_KV = 2
HEAD_DIM = 4
WIDTH = HEAD_COUNT * HEAD_DIM


def random_superblocks(rng, qtype, rows, cols):
    """Random bytes for a K-quant tensor with finite, small f16 super-block scales."""
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(rows * cols // block_elems, block_bytes), dtype=np.uint8)
    # Offsets of the f16 fields `d` (and `dmin`) inside each block.
    fields = {Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}[qtype]
    for offset in fields:
        scales = rng.uniform(-0.05, 0.05, size=blocks.shape[0]).astype(np.float16)
        blocks[:, offset:offset + 2] = scales.view(np.uint8).reshape(-1, 2)
    return blocks.reshape(rows, cols // block_elems * block_bytes)


def llama_permute(weights, heads):
    """llama.cpp's converter permutation of attn_q/attn_k rows (HF layout → GGUF layout)."""
    rows = weights.shape[0]
    return weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def add_every_value_type(writer):
    writer.add_key_value("test.u8", 200, V.UINT8)
    writer.add_key_value("test.i8", -100, V.INT8)
    writer.add_key_value("test.u16", 60000, V.UINT16)
    writer.add_key_value("test.i16", -30000, V.INT16)
    writer.add_key_value("test.u32", 4000000000, V.UINT32)
    writer.add_key_value("test.i32", -2000000000, V.INT32)
    writer.add_key_value("test.f32", 0.5, V.FLOAT32)
    writer.add_key_value("test.bool", True, V.BOOL)
    writer.add_key_value("test.string", "héllo ✓", V.STRING)
    writer.add_key_value("test.u64", 2**40 + 3, V.UINT64)
    writer.add_key_value("test.i64", -(2**40) - 5, V.INT64)
    writer.add_key_value("test.f64", 0.1, V.FLOAT64)
    writer.add_key_value("test.string_array", ["a", "Ġb", ""], V.ARRAY, sub_type=V.STRING)
    writer.add_key_value("test.i32_array", [1, -2, 3], V.ARRAY, sub_type=V.INT32)
    writer.add_key_value("test.f32_array", [0.25, -1.5], V.ARRAY, sub_type=V.FLOAT32)
    writer.add_key_value("test.nested_array", [[1, 2], [3]], V.ARRAY, sub_type=V.ARRAY)


def inverse_llama_permute(weights, heads):
    """Undo llama_permute: GGUF layout → Hugging Face layout."""
    rows = weights.shape[0]
    return weights.reshape(heads, rows // heads // 2, 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def write_model_expectations(model, out):
    from gguf import GGUFReader
    reader = GGUFReader(model)
    field = lambda key: int(reader.fields[key].parts[reader.fields[key].data[0]][0])
    heads = field("llama.attention.head_count")
    kv_heads = field("llama.attention.head_count_kv")
    tensors = {t.name: t for t in reader.tensors}

    def load(name):
        t = tensors[name]
        values = dequantize(t.data, t.tensor_type).astype(np.float32)
        return values.reshape([int(d) for d in reversed(t.shape)])

    expected = {
        "model.layers.0.self_attn.q_proj.weight": inverse_llama_permute(load("blk.0.attn_q.weight"), heads),
        "model.layers.0.self_attn.k_proj.weight": inverse_llama_permute(load("blk.0.attn_k.weight"), kv_heads),
        "model.layers.0.self_attn.v_proj.weight": load("blk.0.attn_v.weight"),
        "model.layers.0.mlp.down_proj.weight": load("blk.0.ffn_down.weight"),
        "model.layers.0.input_layernorm.weight": load("blk.0.attn_norm.weight"),
        "model.norm.weight": load("output_norm.weight"),
        "model.embed_tokens.weight[:8]": load("token_embd.weight")[:8].copy(),
    }
    save_file({k: np.ascontiguousarray(v) for k, v in expected.items()}, out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--model-expectations", nargs=2, metavar=("MODEL", "OUT"))
    args = parser.parse_args()
    if args.model_expectations:
        write_model_expectations(*args.model_expectations)
        return
    rng = np.random.default_rng(args.seed)
    OUT.mkdir(parents=True, exist_ok=True)

    expected = {}
    writer = GGUFWriter(OUT / "quant_types.gguf", arch="llama")
    add_every_value_type(writer)
    writer.add_head_count(HEAD_COUNT)
    writer.add_head_count_kv(HEAD_COUNT_KV)

    rows, cols = 3, 512
    values = rng.normal(0, 1, size=(rows, cols)).astype(np.float32)
    for qtype in [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q5_K, Q.Q6_K]:
        if qtype == Q.F32:
            raw = values
        elif qtype == Q.F16:
            raw = values.astype(np.float16)
        elif qtype in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
            raw = random_superblocks(rng, qtype, rows, cols)
        else:
            raw = quantize(values, qtype)
        name = qtype.name.lower()
        if raw.dtype in (np.float32, np.float16):
            writer.add_tensor(name, raw)
            expected[name] = raw.astype(np.float32)
        else:
            writer.add_tensor(name, raw, raw_dtype=qtype)
            expected[name] = dequantize(raw, qtype).astype(np.float32).reshape(rows, cols)
        assert np.all(np.isfinite(expected[name])), name

    # A llama layer in GGUF layout; the expectations are the Hugging Face (unpermuted) weights.
    q_hf = rng.normal(0, 1, size=(WIDTH, WIDTH)).astype(np.float32)
    k_hf = rng.normal(0, 1, size=(HEAD_COUNT_KV * HEAD_DIM, WIDTH)).astype(np.float32)
    embed = rng.normal(0, 1, size=(10, WIDTH)).astype(np.float32)
    writer.add_tensor("blk.0.attn_q.weight", llama_permute(q_hf, HEAD_COUNT))
    writer.add_tensor("blk.0.attn_k.weight", llama_permute(k_hf, HEAD_COUNT_KV))
    writer.add_tensor("token_embd.weight", embed)
    expected["model.layers.0.self_attn.q_proj.weight"] = q_hf
    expected["model.layers.0.self_attn.k_proj.weight"] = k_hf
    expected["model.embed_tokens.weight"] = embed

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file(expected, str(OUT / "quant_types.safetensors"))

    aligned = GGUFWriter(OUT / "aligned64.gguf", arch="llama")
    aligned.add_custom_alignment(64)
    aligned.add_tensor("first", np.arange(3, dtype=np.float32))
    aligned.add_tensor("second", quantize(values[:1, :64], Q.Q8_0), raw_dtype=Q.Q8_0)
    aligned.write_header_to_file()
    aligned.write_kv_data_to_file()
    aligned.write_tensors_to_file()
    aligned.close()
    save_file({"first": np.arange(3, dtype=np.float32),
               "second": dequantize(quantize(values[:1, :64], Q.Q8_0), Q.Q8_0).astype(np.float32).reshape(1, 64)},
              str(OUT / "aligned64.safetensors"))


if __name__ == "__main__":
    main()
