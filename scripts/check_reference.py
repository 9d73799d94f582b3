#!/usr/bin/env python3
"""Checks that an xLlama student folder written by `xllama linearize` or `xllama distill` loads
into the PyTorch reference implementation and gives the same next-token log-probabilities as
xllama does.

    python3 scripts/check_reference.py STUDENT_DIR [--xllama .build/release/xllama]
        [--reference ../shared/reference] [--tokens 48]

Needs torch, safetensors, mlstm_kernels and xlstm (the reference's imports). Without them it
says so and exits with status 0, because the check is optional: xllama itself never runs Python.
"""
import argparse, json, os, subprocess, sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("student")
    parser.add_argument("--xllama", default=".build/release/xllama")
    parser.add_argument("--reference", default=os.environ.get("XLLAMA_REFERENCE", "../shared/reference"))
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--tolerance", type=float, default=1e-3)
    args = parser.parse_args()

    try:
        import torch
        from safetensors.torch import load_file
        sys.path.insert(0, os.path.abspath(args.reference))
        import xllama_ref
    except ImportError as error:
        print(f"skipped: the PyTorch reference cannot be imported here ({error}); "
              "install torch, safetensors, mlstm_kernels and xlstm to run this check")
        return 0

    with open(os.path.join(args.student, "config.json")) as handle:
        config = json.load(handle)
    if config.get("model_type") != "xllama":
        print(f"error: {args.student} is not an xLlama student (model_type {config.get('model_type')!r})", file=sys.stderr)
        return 1
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "rms_norm_eps")
    student = xllama_ref.Student({key: config[key] for key in keys}).eval()
    weights = load_file(os.path.join(args.student, "model.safetensors"))
    missing, unexpected = student.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
    if missing or unexpected:
        print(f"error: checkpoint names differ from the reference: missing {missing}, unexpected {unexpected}", file=sys.stderr)
        return 1

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config["vocab_size"], (args.tokens,), generator=generator).tolist()
    output = subprocess.run(
        [args.xllama, "score", "--model", args.student, "--ids", json.dumps(ids)],
        check=True, capture_output=True, text=True).stdout
    ours = [row["logprob"] for row in json.loads(output)["tokens"]]

    worst = {}
    with torch.no_grad():
        for kernel in ("parallel", "recurrent"):
            logits, _ = student(torch.tensor([ids]), kernel=kernel)
            reference = torch.log_softmax(logits[0].double(), -1)
            expected = [reference[n - 1, ids[n]].item() for n in range(1, len(ids))]
            worst[kernel] = max(abs(a - b) for a, b in zip(ours, expected))
    for kernel, difference in worst.items():
        print(f"{kernel:9s} reference form: max |Δ log p| = {difference:.2e} over {len(ours)} tokens")
    if max(worst.values()) > args.tolerance:
        print(f"error: log-probabilities differ by more than {args.tolerance}", file=sys.stderr)
        return 1
    print(f"ok: {args.student} loads into the PyTorch reference and matches within {args.tolerance}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
