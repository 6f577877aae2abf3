"""Estimate the train runtime image's size with its real CUDA torch, from wheel sizes.

The cu118 torch cannot be installed here (the PyTorch index is out of reach), so the image that
`make images-check` builds carries a CPU torch instead. This reads the installed (uncompressed)
size of every wheel the CUDA torch brings, from each wheel's zip central directory on PyPI (HTTP
range requests: nothing is downloaded whole), and prints the estimate:

    measured stand-in image - measured CPU torch + CUDA torch and its libraries (+ gsplat's extension)

    python bench/train_image_size.py --image-mb 1720 --cpu-torch-mb 780

It is an estimate: torch 2.7.1's PyPI wheel (a CUDA 12.6 build) stands in for the cu118 one,
whose index is unreachable; the cu118 libraries are the nvidia-*-cu11 wheels torch 2.7.1+cu118
requires, at the versions it pins.
"""

from __future__ import annotations

import argparse
import json
import struct
import urllib.request

#: What `pip install torch==2.7.1 --index-url .../whl/cu118` installs besides small pure-Python
#: packages: the versions torch 2.7.1+cu118 pins (Linux x86_64).
CUDA_TORCH = {
    "torch": "2.7.1",  # PyPI's wheel (CUDA 12.6) as the size of the cu118 one
    "triton": "3.3.1",
    "nvidia-cudnn-cu11": "9.1.0.70",
    "nvidia-cublas-cu11": "11.11.3.6",
    "nvidia-cusolver-cu11": "11.4.1.48",
    "nvidia-cufft-cu11": "10.9.0.58",
    "nvidia-cusparse-cu11": "11.7.5.86",
    "nvidia-nccl-cu11": "2.21.5",
    "nvidia-curand-cu11": "10.3.0.86",
    "nvidia-cuda-nvrtc-cu11": "11.8.89",
    "nvidia-cuda-cupti-cu11": "11.8.87",
    "nvidia-cuda-runtime-cu11": "11.8.89",
    "nvidia-nvtx-cu11": "11.8.86",
}
#: gsplat's AOT extension for four architectures, MB: an allowance (the wheel is built on CodeBuild
#: or the device machine; build_gsplat.sh prints its size there).
GSPLAT_EXTENSION_MB = 100.0


def _get(url: str, byte_range: str) -> bytes:
    request = urllib.request.Request(url, headers={"Range": f"bytes={byte_range}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def installed_bytes(url: str, size: int) -> int:
    """Sum of the uncompressed sizes in a wheel's central directory (what pip unpacks)."""
    tail = _get(url, f"-{min(size, 1 << 20)}")
    end = tail.rfind(b"PK\x05\x06")
    _sig, _disk, _cd_disk, _n_disk, count, cd_size, cd_offset, _comment = struct.unpack(
        "<IHHHHIIH", tail[end:end + 22])
    base = size - len(tail)
    directory = (tail[cd_offset - base:cd_offset - base + cd_size] if cd_offset >= base
                 else _get(url, f"{cd_offset}-{cd_offset + cd_size - 1}"))
    total, pos = 0, 0
    for _ in range(count):
        if directory[pos:pos + 4] != b"PK\x01\x02":
            raise ValueError(f"{url}: unexpected central directory entry at {pos}")
        total += struct.unpack("<I", directory[pos + 24:pos + 28])[0]
        name_len, extra_len, comment_len = struct.unpack("<HHH", directory[pos + 28:pos + 34])
        pos += 46 + name_len + extra_len + comment_len
    return total


def wheel(name: str, version: str) -> tuple[str, int, int]:
    """(file name, download bytes, installed bytes) of the cp311 / py3 x86_64 wheel of ``name==version``."""
    request = urllib.request.Request(f"https://pypi.org/simple/{name}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        files = json.load(response)["files"]
    f = next(f for f in files if f"-{version}-" in f["filename"] and "x86_64" in f["filename"]
             and ("cp311" in f["filename"] or "py3-none" in f["filename"]))
    return f["filename"], f["size"], installed_bytes(f["url"], f["size"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-mb", type=float, required=True, help="the stand-in train image (images-check)")
    parser.add_argument("--cpu-torch-mb", type=float, required=True, help="its CPU torch, installed")
    args = parser.parse_args()
    print("| wheel | download MB | installed MB |\n|---|---:|---:|")
    rows = [wheel(n, v) for n, v in CUDA_TORCH.items()]
    for name, download, installed in rows:
        print(f"| {name} | {download / 1e6:.1f} | {installed / 1e6:.1f} |")
    cuda = sum(r[2] for r in rows) / 1e6
    print(f"| total | {sum(r[1] for r in rows) / 1e6:.1f} | {cuda:.1f} |")
    estimate = args.image_mb - args.cpu_torch_mb + cuda + GSPLAT_EXTENSION_MB
    print(f"\nestimate: {args.image_mb:.0f} - {args.cpu_torch_mb:.0f} + {cuda:.0f} + {GSPLAT_EXTENSION_MB:.0f} "
          f"(gsplat extension allowance) = {estimate:.0f} MB ({estimate / 1e3:.2f} GB; goal <= 8 GB)")


if __name__ == "__main__":
    main()
