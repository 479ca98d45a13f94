"""Did a change make anything slower? The same benchmarks on an older commit and on this tree,
alternating in one run, so both see the same machine.

Run:  .venv/bin/python benchmarks/bench_before_after.py --old REF [--rounds 3]
          [--generate "--tokens 64 --repeats 5"] [--attention "--tokens 1024 --repeats 3"]

``REF`` is checked out with ``git worktree add --detach`` into a temporary folder (removed at
the end; ``--old-tree PATH`` uses a checkout you already have). Each round runs
``bench_generate.py`` and ``bench_attention.py`` (this tree's copies, so both sides are
measured by the same code) once against each tree, old then new in odd rounds and new then old
in even ones, so a machine that drifts during the run does not favour one side. Each run is a
fresh process that imports ``llmlab`` (and ``llmlab.magics``/``llmlab.widgets``) from its tree.
It prints every run's figures, then per figure the median of each side and new / old.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEW_TREE = HERE.parent

#: Imports llmlab from one tree: the engine, and the two front doors that install as
#: llmlab.magics and llmlab.widgets (an editable install would map them to the other tree).
RUNNER = """
import importlib.util, runpy, sys
tree, script, *argv = sys.argv[1:]
sys.path.insert(0, tree + "/.bench-shim")
import llmlab
assert llmlab.__file__.startswith(tree), llmlab.__file__
for name in ("magics", "widgets"):
    spec = importlib.util.spec_from_file_location(
        f"llmlab.{name}", f"{tree}/{name}/__init__.py",
        submodule_search_locations=[f"{tree}/{name}"],
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    setattr(llmlab, name, module)
sys.argv = [script, *argv]
runpy.run_path(script, run_name="__main__")
"""

#: (benchmark, figure name, regex over its output, better) — what is compared.
FIGURES = [
    ("generate", "%llm generate decode tok/s", r"%llm generate decode:\s+([\d.]+)", "high"),
    ("generate", "raw generate decode tok/s", r"raw model\.generate decode:\s+([\d.]+)", "high"),
    ("generate", "ratio %llm / raw", r"ratio %llm / raw:\s+([\d.]+)", "high"),
    ("generate", "import llmlab s", r"import llmlab:\s+([\d.]+)", "low"),
]
ATTENTION_LINE = re.compile(
    r"(\d+) tokens: capture ([\d.]+) s \+ payload ([\d.]+) s = ([\d.]+) s \| plain sdpa "
    r"forward ([\d.]+) s \(([\d.]+)x\)"
)


def _shim(tree: Path) -> None:
    """``tree/.bench-shim/llmlab`` -> ``tree/llmlab``, so ``import llmlab`` finds that tree."""
    shim = tree / ".bench-shim"
    shim.mkdir(exist_ok=True)
    link = shim / "llmlab"
    if not link.exists():
        link.symlink_to(tree / "llmlab")


def _run(tree: Path, bench: str, args: str) -> str:
    script = HERE / f"bench_{bench}.py"
    env = os.environ | {
        # Fresh processes the benchmark starts itself (import timing, warm load) import llmlab
        # from the same tree.
        "PYTHONPATH": f"{tree / '.bench-shim'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "HF_HUB_OFFLINE": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, str(tree), str(script), *shlex.split(args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
    )
    if out.returncode:
        raise SystemExit(f"bench_{bench}.py failed on {tree}:\n{out.stderr[-3000:]}")
    return out.stdout


def _figures(bench: str, text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    if bench == "generate":
        for b, name, pattern, _ in FIGURES:
            if b == bench and (m := re.search(pattern, text)):
                found[name] = float(m.group(1))
    else:
        for m in ATTENTION_LINE.finditer(text):
            n = m.group(1)
            found[f"attention {n} tokens: capture + payload s"] = float(m.group(4))
            found[f"attention {n} tokens: plain sdpa forward s"] = float(m.group(5))
            found[f"attention {n} tokens: / plain sdpa"] = float(m.group(6))
    return found


def _better(name: str) -> str:
    for _, figure, _, better in FIGURES:
        if figure == name:
            return better
    return "low"  # seconds and ratios to a plain forward pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="main", help="the commit to compare with (git ref)")
    parser.add_argument("--old-tree", help="an existing checkout of it instead")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--generate", default="--tokens 64 --repeats 5")
    parser.add_argument("--attention", default="--tokens 1024 --repeats 3")
    args = parser.parse_args()

    made = None
    if args.old_tree:
        old = Path(args.old_tree).resolve()
    else:
        made = Path(tempfile.mkdtemp(prefix="llmlab-old-"))
        old = made / "tree"
        subprocess.run(
            ["git", "-C", str(NEW_TREE), "worktree", "add", "--detach", str(old), args.old],
            check=True,
            capture_output=True,
        )
    commit = subprocess.run(
        ["git", "-C", str(old), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    trees = {"old": old, "new": NEW_TREE}
    try:
        for tree in trees.values():
            _shim(tree)
        samples: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
        print(f"old: {old} ({commit}); new: {NEW_TREE}; load average {os.getloadavg()[0]:.1f}")
        for r in range(args.rounds):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for bench, bench_args in (("generate", args.generate), ("attention", args.attention)):
                for side in order:
                    figures = _figures(bench, _run(trees[side], bench, bench_args))
                    for name, value in figures.items():
                        samples[side].setdefault(name, []).append(value)
                    shown = ", ".join(f"{k} {v:g}" for k, v in figures.items())
                    print(f"round {r + 1} {side}: {shown}", flush=True)
        print(f"\nmedian of {args.rounds} rounds      old        new     new/old")
        for name in samples["new"]:
            a, b = samples["old"].get(name), samples["new"][name]
            if not a:
                continue
            ma, mb = statistics.median(a), statistics.median(b)
            ratio = mb / ma if ma else float("nan")
            worse = ratio < 1 if _better(name) == "high" else ratio > 1
            note = f"({'slower' if worse else 'faster'} or noise)" if abs(ratio - 1) > 0.02 else ""
            print(f"{name:<45} {ma:9.3f} {mb:9.3f} {ratio:8.3f} {note}")
    finally:
        for tree in trees.values():
            link = tree / ".bench-shim" / "llmlab"
            if link.is_symlink():
                link.unlink()
                (tree / ".bench-shim").rmdir()
        if made is not None:
            subprocess.run(
                ["git", "-C", str(NEW_TREE), "worktree", "remove", "--force", str(old)],
                capture_output=True,
            )


if __name__ == "__main__":
    main()
