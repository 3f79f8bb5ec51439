"""A cold `make install`: today's uv recipe beside the one before it and beside pip.

Every recipe runs in a fresh temporary folder (a new venv, a new uv cache, no pip cache),
each phase timed from outside (wall and CPU of the child processes), in turn A B C ... A B C
so that a busy machine weighs on every recipe alike:

- ``uv_lock``: ``make install VENV=<tmp>/venv``, the Makefile's own recipe, then the import check;
- ``uv_lock_before``: the recipe before this benchmark's changes (uv resolves the lock again,
  then a second uv call installs the project; pyspark's wheel deflated);
- ``pip_lock``: pip installs the same set (``-r requirements.lock``, then ``--no-deps -e .``),
  as the GitHub workflows do, with the newest pip;
- ``pip_ranges``: the install before the lock: pip resolves ``-e ".[dev]"`` from the ranges;
- ``uv_pyspark`` / ``pip_pyspark``: pyspark alone from the lock, cold, as each tool builds it
  (``make install``'s flags for uv, pip's defaults), the floor both installs share;
- ``uv_lock_no_pyspark`` / ``pip_lock_no_pyspark``: both lock installs without pyspark and
  dagster-pyspark, wheels only: the tools compared once the shared sdist is out;
- ``pyspark_download``: pyspark's source distribution fetched with curl, the network floor.

pip and uv see none of this machine's configuration (``PIP_CONFIG_FILE=/dev/null``, no
``PIP_FIND_LINKS``, no ``UV_*`` but the cache) and ``PYTHONDONTWRITEBYTECODE`` is unset, as on
a developer's machine: both then take every package from the same index.

Writes bench/results/install.json.

    .venv/bin/python bench/bench_install.py --runs 3
    .venv/bin/python bench/bench_install.py --runs 2 --merge \
        --recipes uv_lock_no_pyspark pip_lock_no_pyspark    # adds to the same file
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("bench_install")
HERE = Path(__file__).parent
REPO = HERE.parent
RESULTS = HERE / "results" / "install.json"
LOCK = REPO / "requirements.lock"
IMPORTS = "import fraud_assets, dagster, mlflow, pyspark, catboost, xgboost"
UV_VERSION = re.search(r"^UV_VERSION := (\S+)", (REPO / "Makefile").read_text(), re.M)[1]  # type: ignore[index]
PYSPARK = re.search(r"^pyspark==(\S+)", LOCK.read_text(), re.M)[1]  # type: ignore[index]
STORED = ["--config-settings-package", "pyspark:--build-option=--compression=stored"]

# name -> [(phase, argv)], "{d}" the run's fresh folder; "{uv}" the uv of the repo's own .venv.
Phases = list[tuple[str, list[str]]]
VENV = ("venv", ["python3", "-m", "venv", "{d}/venv"])
PY = "{d}/venv/bin/python"
UV_IN_VENV = "{d}/venv/bin/uv"
LOCK_NO_PS = ["-r", "{d}/lock", "-e", "."]
PIP_UP = ("pip upgrade", [PY, "-m", "pip", "install", "-q", "--upgrade", "pip"])
RECIPES: dict[str, Phases] = {
    "uv_lock": [("make install", ["make", "--silent", "install", "VENV={d}/venv"])],
    "uv_lock_before": [
        VENV,
        ("pip install uv", [PY, "-m", "pip", "install", "-q", f"uv=={UV_VERSION}"]),
        (
            "uv install lock",
            ["{d}/venv/bin/uv", "pip", "install", "-q", "--python", PY, "-r", str(LOCK)],
        ),
        (
            "uv install -e .",
            ["{d}/venv/bin/uv", "pip", "install", "-q", "--python", PY, "--no-deps", "-e", "."],
        ),
    ],
    "pip_lock": [
        VENV,
        PIP_UP,
        ("pip install lock", [PY, "-m", "pip", "install", "-q", "-r", str(LOCK)]),
        ("pip install -e .", [PY, "-m", "pip", "install", "-q", "--no-deps", "-e", "."]),
    ],
    "pip_ranges": [
        VENV,
        PIP_UP,
        ("pip install -e .[dev]", [PY, "-m", "pip", "install", "-q", "-e", ".[dev]"]),
    ],
    "uv_pyspark": [
        ("uv venv", ["{uv}", "venv", "-q", "--python", "python3", "{d}/venv"]),
        (
            "pyspark",
            [
                "{uv}",
                "pip",
                "install",
                "-q",
                "--python",
                PY,
                "--no-deps",
                *STORED,
                f"pyspark=={PYSPARK}",
            ],
        ),
    ],
    "pip_pyspark": [
        VENV,
        PIP_UP,
        ("pyspark", [PY, "-m", "pip", "install", "-q", "--no-deps", f"pyspark=={PYSPARK}"]),
    ],
    # The same two installs without pyspark (and dagster-pyspark, which needs it): what each
    # tool does with the other 178 packages, wheels only, once the shared sdist is out.
    "uv_lock_no_pyspark": [
        VENV,
        ("pip install uv", [PY, "-m", "pip", "install", "-q", f"uv=={UV_VERSION}"]),
        (
            "uv install lock",
            [UV_IN_VENV, "pip", "install", "-q", "--python", PY, "--no-deps", *LOCK_NO_PS],
        ),
    ],
    "pip_lock_no_pyspark": [
        VENV,
        PIP_UP,
        ("pip install lock", [PY, "-m", "pip", "install", "-q", "-r", "{d}/lock"]),
        ("pip install -e .", [PY, "-m", "pip", "install", "-q", "--no-deps", "-e", "."]),
    ],
}
NO_PYSPARK = {"uv_lock_no_pyspark", "pip_lock_no_pyspark"}
WITH_IMPORT = {"uv_lock", "uv_lock_before", "pip_lock", "pip_ranges"}


def clean_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1", UV_CACHE_DIR=str(folder / "cache"))
    return env


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_recipe(name: str) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix=f"cold-{name}-"))
    env = clean_env(folder)
    uv = str(REPO / ".venv" / "bin" / "uv")
    phases = RECIPES[name] + (
        [("import check", [PY, "-c", IMPORTS])] if name in WITH_IMPORT else []
    )
    result: dict[str, object] = {"load_before": round(os.getloadavg()[0], 2), "phases": {}}
    if name in NO_PYSPARK:
        kept = [ln for ln in LOCK.read_text().splitlines() if "pyspark==" not in ln]
        (folder / "lock").write_text("\n".join(kept) + "\n")
    try:
        for phase, argv in phases:
            cmd = [a.replace("{d}", str(folder)).replace("{uv}", uv) for a in argv]
            wall, cpu = time.perf_counter(), child_cpu()
            subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
            result["phases"][phase] = {  # type: ignore[index]
                "wall_s": round(time.perf_counter() - wall, 2),
                "cpu_s": round(child_cpu() - cpu, 2),
            }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    phase_times = result["phases"].values()  # type: ignore[attr-defined]
    install = [p for n, p in result["phases"].items() if n != "import check"]  # type: ignore[attr-defined]
    result["install_wall_s"] = round(sum(p["wall_s"] for p in install), 2)
    result["install_cpu_s"] = round(sum(p["cpu_s"] for p in install), 2)
    result["total_wall_s"] = round(sum(p["wall_s"] for p in phase_times), 2)
    return result


def sdist_url() -> str:
    """The locked pyspark sdist's address on the default index, as uv's pylock.toml gives it."""
    with tempfile.TemporaryDirectory() as cache:
        compile_ = ["pip", "compile", "-", "--no-deps", "-q", "--format", "pylock.toml"]
        pylock = subprocess.run(
            [str(REPO / ".venv" / "bin" / "uv"), *compile_, "--cache-dir", cache],
            input=f"pyspark=={PYSPARK}\n",
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return str(tomllib.loads(pylock)["packages"][0]["sdist"]["url"])


def download(url: str) -> dict[str, object]:
    wall = time.perf_counter()
    out = subprocess.run(
        ["curl", "-sS", "-o", os.devnull, "-w", "%{size_download}", url],
        check=True,
        capture_output=True,
        text=True,
    )
    return {"wall_s": round(time.perf_counter() - wall, 2), "bytes": int(out.stdout)}


def median(runs: list[dict[str, object]], key: str) -> float:
    return round(statistics.median(float(r[key]) for r in runs), 2)  # type: ignore[arg-type]


def session(args: argparse.Namespace) -> dict[str, object]:
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "command": f".venv/bin/python bench/bench_install.py --runs {args.runs}"
        + (f" --recipes {' '.join(args.recipes)} --merge" if args.merge else ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--recipes", nargs="*", default=[*RECIPES, "pyspark_download"])
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--merge", action="store_true", help="keep the output's other recipes, add these runs"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url = sdist_url()
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in args.recipes}
    for run in range(args.runs):
        for name in args.recipes:
            runs[name].append(download(url) if name == "pyspark_download" else run_recipe(name))
            last = runs[name][-1]
            log.info("run %d, %s: %s", run + 1, name, json.dumps(last))
    sessions = [session(args)]
    if args.merge and args.output.is_file():
        previous = json.loads(args.output.read_text(encoding="utf-8"))
        runs = {**{k: v for k, v in previous["runs"].items() if k not in runs}, **runs}
        sessions = previous["sessions"] + sessions
    summary: dict[str, dict[str, float]] = {}
    for name, done in runs.items():
        if name == "pyspark_download":
            summary[name] = {
                "wall_s_median": median(done, "wall_s"),
                "bytes": float(done[0]["bytes"]),  # type: ignore[arg-type]
            }
            continue
        summary[name] = {
            "install_wall_s_median": median(done, "install_wall_s"),
            "install_wall_s_min": min(float(r["install_wall_s"]) for r in done),  # type: ignore[arg-type]
            "install_cpu_s_median": median(done, "install_cpu_s"),
            "total_wall_s_median": median(done, "total_wall_s"),
        }
    ratios: dict[str, float] = {}
    if {"uv_lock", "pip_lock", "pip_ranges"} <= summary.keys():
        uv = summary["uv_lock"]
        for pip in ("pip_lock", "pip_ranges"):
            ratios[f"{pip}_over_uv_lock_install_wall"] = round(
                summary[pip]["install_wall_s_median"] / uv["install_wall_s_median"], 2
            )
            ratios[f"{pip}_over_uv_lock_install_cpu"] = round(
                summary[pip]["install_cpu_s_median"] / uv["install_cpu_s_median"], 2
            )
            ratios[f"{pip}_over_uv_lock_with_import_wall"] = round(
                summary[pip]["total_wall_s_median"] / uv["total_wall_s_median"], 2
            )
    if summary.keys() >= NO_PYSPARK:
        ratios["pip_over_uv_without_pyspark_install_wall"] = round(
            summary["pip_lock_no_pyspark"]["install_wall_s_median"]
            / summary["uv_lock_no_pyspark"]["install_wall_s_median"],
            2,
        )
        ratios["pip_over_uv_without_pyspark_install_cpu"] = round(
            summary["pip_lock_no_pyspark"]["install_cpu_s_median"]
            / summary["uv_lock_no_pyspark"]["install_cpu_s_median"],
            2,
        )
    if {"uv_lock", "uv_lock_before"} <= summary.keys():
        ratios["uv_lock_before_over_uv_lock_install_wall"] = round(
            summary["uv_lock_before"]["install_wall_s_median"]
            / summary["uv_lock"]["install_wall_s_median"],
            2,
        )
    result = {
        "sessions": sessions,
        "uv_version": UV_VERSION,
        "pyspark": {"version": PYSPARK, "sdist": url.rsplit("/", 1)[-1]},
        "summary": summary,
        "ratios": ratios,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("%s", json.dumps({"summary": summary, "ratios": ratios}, indent=2))
    log.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
