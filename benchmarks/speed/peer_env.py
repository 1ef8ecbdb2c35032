"""The peer's virtual environment: MMAction2 1.2.0 beside, never inside, the project's.

MMAction2 1.2.0 installs with `mmengine` and `mmcv-lite>=2.0.0rc4,<2.2` (2.2.0 is refused at
its import) and needs `importlib-metadata` without declaring it; mmengine and mmcv-lite pull
`opencv-python` and mmaction2 `opencv-contrib-python`, which would shadow the project's OpenCV:
so it gets a virtual environment of its own. torch / torchvision are pinned to the releases
this machine's pip takes from its local disk for Python 3.11 (anything newer is a several-GB
CUDA download).

The environment is built once into `<venv>.tmp`; `peer-env.json` (the pins and what got
installed) is written into it last, then the folder is renamed into place, so a folder at
`<venv>` with that marker and the same pins is complete and a later run reuses it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from two_stream.atomic import atomic_write_text
from two_stream.errors import UserError

PINS = ("torch==2.14.1", "torchvision==0.29.1", "mmaction2==1.2.0", "mmengine",
        "mmcv-lite>=2.0.0rc4,<2.2", "importlib-metadata")
MARKER = "peer-env.json"
DEFAULT_VENV = Path("~/.cache/two-stream/peers/mmaction2-1.2.0").expanduser()
REPORTED = ("mmaction2", "mmengine", "mmcv-lite", "torch", "torchvision", "numpy",
            "opencv-python", "opencv-contrib-python", "importlib-metadata")
# what pip prints when it cannot reach the package index (urllib3 / requests / pip messages)
_NETWORK_SIGNS = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name "
                  "resolution", "Name or service not known", "Network is unreachable",
                  "Connection refused", "ConnectTimeoutError", "ReadTimeoutError",
                  "No matching distribution found", "Could not find a version that satisfies")


def venv_python(venv: str | os.PathLike) -> Path:
    """The environment's interpreter (POSIX layout: this benchmark runs on Linux)."""
    return Path(venv) / "bin" / "python"


def is_ready(venv: str | os.PathLike, pins: tuple[str, ...] = PINS) -> bool:
    """True when `venv` was completely built with exactly `pins` and its Python still runs."""
    marker = Path(venv) / MARKER
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info.get("pins") == list(pins) and venv_python(venv).exists()


def explain_pip_failure(output: str, pins: tuple[str, ...]) -> str:
    """One line saying why `pip install` failed: the registry out of reach (the usual reason
    on a closed machine), or else the last thing pip said."""
    lines = [ln.strip() for ln in output.splitlines()
             if ln.strip() and not ln.startswith("WARNING: Location")]
    if any(sign in output for sign in _NETWORK_SIGNS):
        said = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1]
                    if lines else "")
        return ("cannot install the MMAction2 peer environment: the package registry is not "
                f"reachable or lacks a pinned release ({' '.join(pins)}); pip said: {said}")
    return ("cannot install the MMAction2 peer environment; pip said: "
            + (lines[-1] if lines else "nothing"))


def installed_versions(python: str | os.PathLike) -> dict[str, str | None]:
    """Versions of the `REPORTED` distributions inside the environment of `python`."""
    code = ("import json, importlib.metadata as m\n"
            "out = {}\n"
            f"for d in {list(REPORTED)!r}:\n"
            "    try: out[d] = m.version(d)\n"
            "    except m.PackageNotFoundError: out[d] = None\n"
            "print(json.dumps(out))")
    res = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise UserError(f"{python}: the peer environment's Python does not run "
                        f"({res.stderr.strip().splitlines()[-1:]}); delete it to rebuild")
    return json.loads(res.stdout)


def ensure_peer_env(venv: str | os.PathLike = DEFAULT_VENV, pins: tuple[str, ...] = PINS,
                    quiet: bool = False) -> Path:
    """The interpreter of a ready peer environment at `venv`, built first when missing (a few
    minutes and ~6 GB: torch's wheel is a CUDA build). One this benchmark built with other
    pins (its marker says so) is rebuilt; anything else at `venv` is left alone."""
    venv = Path(venv).expanduser()
    if is_ready(venv, pins):
        return venv_python(venv)
    if venv.exists():
        if not (venv / MARKER).exists():  # ours are renamed into place with their marker
            raise UserError(f"{venv}: exists but was not built by this benchmark (no "
                            f"{MARKER}); delete it or choose another --peer-venv")
        shutil.rmtree(venv)  # ours, with other pins
    tmp = venv.with_name(venv.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"building the MMAction2 peer environment in {venv} (once; a few minutes)",
              file=sys.stderr)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(tmp)], check=True)
    res = subprocess.run([str(venv_python(tmp)), "-m", "pip", "install",
                          "--disable-pip-version-check", "-q", *pins],
                         capture_output=True, text=True)
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(explain_pip_failure(res.stdout + res.stderr, pins))
    write_marker(tmp, pins)  # complete: the rename publishes it with its marker
    os.replace(tmp, venv)
    _repoint(venv, tmp)
    return venv_python(venv)


def _repoint(venv: Path, old: Path) -> None:
    """A venv records its own path in `bin/activate*` and in script shebangs; after the
    rename those still name `<venv>.tmp`. The benchmark calls `bin/python` only, which does
    not care, but pip's entry scripts would: rewrite them."""
    for f in (venv / "bin").iterdir():
        if f.is_file() and not f.is_symlink():
            try:
                text = f.read_text()
            except UnicodeDecodeError:
                continue
            if str(old) in text:
                f.write_text(text.replace(str(old), str(venv)))


def write_marker(venv: Path, pins: tuple[str, ...] = PINS) -> dict:
    """Record the pins and the installed versions: the environment is complete."""
    info = {"pins": list(pins), "versions": installed_versions(venv_python(venv))}
    atomic_write_text(venv / MARKER, json.dumps(info, indent=2) + "\n")
    return info
