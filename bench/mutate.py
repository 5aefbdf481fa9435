#!/usr/bin/env python
"""A small mutation pass over fastmix's drivers: does any test fail when a line is broken?

For one module at a time, every mutation point of its AST is listed -- a comparison operator
flipped (< <= > >= == != is, is not, in, not in), an arithmetic operator swapped (+ -, * /,
// %, **), a unary minus or ``not`` dropped, a numeric constant changed (0 <-> 1, c -> c + 1,
2 -> 1), ``and`` <-> ``or``, ``True`` <-> ``False``, a statement deleted (replaced by ``pass``)
-- and a seeded random sample of them is applied, one mutant at a time, to a private copy of
the repository (``--workdir``; the worktree itself is never modified).  Each mutant runs the
module's fast test files (``pytest -x -q``, ``--timeout`` seconds); a mutant is *killed* when
pytest fails or times out, *survived* when every test passes.  The unmutated module, written
back through ``ast.unparse`` like every mutant, must pass first (the baseline).

Output: a Markdown table of survivors (module, line, mutation, source line) on stdout and,
with ``--json``, every mutant's outcome.

Usage (from the repository root)::

    python bench/mutate.py --per-module 40 --seed 0 --json bench/results/mutate.json
    python bench/mutate.py --module fastmix/sgd.py --per-module 10

Docstrings are not mutated; ``assert``/``raise`` statements and the bodies of ``if __debug__``
are treated like any other statement.  Numba kernels compile on first use in the copy; the
numba on-disk cache of the copy is reused across mutants of driver modules.
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: module -> pytest arguments: the fast test files (and -k selections) that exercise it
TESTS = {
    "fastmix/biglearn.py": ["tests/test_biglearn.py", "-k", "not wine"],
    "fastmix/sgd.py": ["tests/test_sgd.py", "-k", "not lpd and not avoids_degenerate"],
    "fastmix/em.py": ["tests/test_sklearn_parity.py", "tests/test_fixed.py"],
    "fastmix/_params.py": ["tests/test_sklearn_parity.py", "tests/test_fixed.py"],
    "fastmix/kernels/cpu/estep.py": ["tests/test_kernels.py"],
}

#: module -> the wider test set a survivor of the fast selection is re-run against (--recheck)
RECHECK = {
    "fastmix/biglearn.py": ["tests/test_biglearn.py"],
    "fastmix/sgd.py": ["tests/test_sgd.py", "tests/test_sgd_kernels.py"],
    "fastmix/em.py": ["tests/test_api.py", "tests/test_online.py", "tests/test_fixed.py",
                      "tests/test_sklearn_parity.py"],
    "fastmix/_params.py": ["tests/test_lowrank.py", "tests/test_api.py", "tests/test_kernels.py",
                           "tests/test_mutation_pins.py"],
    "fastmix/kernels/cpu/estep.py": ["tests/test_kernels.py"],
}

CMP_SWAP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt,
            ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
            ast.In: ast.NotIn, ast.NotIn: ast.In}
CMP_EDGE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
BIN_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
            ast.FloorDiv: ast.Mod, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
            ast.MatMult: ast.Mult}


def _is_docstring(node, parent):
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def mutation_points(tree):
    """[(path to node, kind, description)] for every mutation of ``tree``; a path is a list of
    (field, index) steps from the module, so the point can be found again in a fresh copy."""
    out = []

    def visit(node, path):
        for field, value in ast.iter_fields(node):
            items = value if isinstance(value, list) else [value]
            for i, child in enumerate(items):
                if not isinstance(child, ast.AST):
                    continue
                p = path + [(field, i if isinstance(value, list) else None)]
                line = getattr(child, "lineno", None)
                if isinstance(child, ast.stmt) and not _is_docstring(child, node) \
                        and not isinstance(child, (ast.FunctionDef, ast.ClassDef, ast.Import,
                                                   ast.ImportFrom, ast.Pass)):
                    out.append((p, "delete", line, "delete statement"))
                if isinstance(child, ast.Compare):
                    for j, op in enumerate(child.ops):
                        if type(op) in CMP_SWAP:
                            out.append((p, ("cmp", j, CMP_SWAP[type(op)]), line,
                                        f"{type(op).__name__} -> {CMP_SWAP[type(op)].__name__}"))
                        if type(op) in CMP_EDGE:
                            out.append((p, ("cmp", j, CMP_EDGE[type(op)]), line,
                                        f"{type(op).__name__} -> {CMP_EDGE[type(op)].__name__}"))
                if isinstance(child, (ast.BinOp, ast.AugAssign)) and type(child.op) in BIN_SWAP:
                    new = BIN_SWAP[type(child.op)]
                    out.append((p, ("bin", new), line,
                                f"{type(child.op).__name__} -> {new.__name__}"))
                if isinstance(child, ast.UnaryOp) and isinstance(child.op, (ast.USub, ast.Not)):
                    out.append((p, "unary", line, f"drop {type(child.op).__name__}"))
                if isinstance(child, ast.BoolOp):
                    out.append((p, "boolop", line, "and <-> or"))
                if isinstance(child, ast.Constant) and type(child.value) in (int, float, bool):
                    v = child.value
                    if isinstance(v, bool):
                        new = not v
                    elif v == 0:
                        new = type(v)(1)
                    elif v == 1:
                        new = type(v)(0)
                    elif v == 2:
                        new = type(v)(1)
                    else:
                        new = v + 1
                    out.append((p, ("const", new), line, f"{v!r} -> {new!r}"))
                visit(child, p)

    visit(tree, [])
    return out


def _find(tree, path):
    parent, node = None, tree
    for field, i in path:
        parent = (node, field, i)
        node = getattr(node, field) if i is None else getattr(node, field)[i]
    return parent, node


def apply(tree, point):
    tree = copy.deepcopy(tree)
    path, kind = point[0], point[1]
    (pnode, field, i), node = _find(tree, path)
    if kind == "delete":
        repl = ast.Pass()
        ast.copy_location(repl, node)
        if i is None:
            setattr(pnode, field, repl)
        else:
            getattr(pnode, field)[i] = repl
    elif kind == "unary":
        if i is None:
            setattr(pnode, field, node.operand)
        else:
            getattr(pnode, field)[i] = node.operand
    elif kind == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind[0] == "cmp":
        node.ops[kind[1]] = kind[2]()
    elif kind[0] == "bin":
        node.op = kind[1]()
    elif kind[0] == "const":
        node.value = kind[1]
    return ast.fix_missing_locations(tree)


def run_tests(workdir, tests, timeout):
    env = dict(os.environ, PYTHONPATH=workdir, NUMBA_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    t = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                            *tests], cwd=workdir, env=env, capture_output=True, text=True,
                           timeout=timeout)
        status = "survived" if r.returncode == 0 else "killed"
        tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]
    except subprocess.TimeoutExpired:
        status, tail = "timeout", ["timeout"]
    return status, time.perf_counter() - t, tail[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", action="append", help="module path(s); default: the drivers")
    ap.add_argument("--per-module", type=int, default=40, help="mutants sampled per module")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per mutant (default 3x the baseline run, at least 60)")
    ap.add_argument("--workdir", default="/tmp/fastmix-mutate")
    ap.add_argument("--json", default=None)
    ap.add_argument("--recheck", default=None, metavar="JSON",
                    help="re-run the survivors listed in an earlier --json against the wider "
                         "test set of their module (RECHECK); a mutation is found again by its "
                         "line and description in the current source")
    args = ap.parse_args(argv)
    if args.recheck:
        return recheck(args)
    modules = args.module or ["fastmix/biglearn.py", "fastmix/sgd.py", "fastmix/em.py",
                              "fastmix/_params.py"]
    for m in modules:
        if m not in TESTS:
            raise SystemExit(f"no test files known for {m}; known: {sorted(TESTS)}")
    work = args.workdir
    if os.path.exists(work):
        shutil.rmtree(work)
    for sub in ("fastmix", "tests"):
        shutil.copytree(os.path.join(ROOT, sub), os.path.join(work, sub),
                        ignore=shutil.ignore_patterns("*.pyc"))
    for f in ("pyproject.toml", "conftest.py", "setup.cfg", "pytest.ini"):
        if os.path.exists(os.path.join(ROOT, f)):
            shutil.copy2(os.path.join(ROOT, f), os.path.join(work, f))
    results = []
    rng = random.Random(args.seed)
    for mod in modules:
        src_path = os.path.join(work, mod)
        with open(src_path) as fh:
            original = fh.read()
        tree = ast.parse(original)
        with open(src_path, "w") as fh:
            fh.write(ast.unparse(tree))
        status, sec, tail = run_tests(work, TESTS[mod], None)
        print(f"# {mod}: baseline {status} in {sec:.0f} s ({tail})", file=sys.stderr, flush=True)
        if status != "survived":
            with open(src_path, "w") as fh:
                fh.write(original)
            results.append({"module": mod, "baseline": status, "tail": tail})
            continue
        timeout = args.timeout or max(60.0, 3 * sec)
        lines = original.splitlines()
        points = mutation_points(tree)
        sample = sorted(rng.sample(range(len(points)), min(args.per_module, len(points))))
        for n, j in enumerate(sample):
            point = points[j]
            try:
                mutant = ast.unparse(apply(tree, point))
                compile(mutant, mod, "exec")
            except Exception as e:  # noqa: BLE001 - an unbuildable mutant is skipped
                results.append({"module": mod, "line": point[2], "mutation": point[3],
                                "status": f"invalid ({type(e).__name__})"})
                continue
            with open(src_path, "w") as fh:
                fh.write(mutant)
            status, sec, tail = run_tests(work, TESTS[mod], timeout)
            src = lines[point[2] - 1].strip() if point[2] else ""
            results.append({"module": mod, "line": point[2], "mutation": point[3],
                            "status": status, "seconds": round(sec, 1), "source": src,
                            "tail": tail})
            print(f"{mod}:{point[2]} [{n + 1}/{len(sample)}] {point[3]}: {status} "
                  f"({sec:.0f} s)  {src[:70]}", file=sys.stderr, flush=True)
            if args.json:  # after every mutant, so that an interrupted run leaves its results
                with open(args.json, "w") as fh:
                    json.dump(results, fh, indent=1)
        with open(src_path, "w") as fh:
            fh.write(original)
        print(f"# {mod}: {len(points)} mutation points, {len(sample)} sampled", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    print("| module | line | mutation | source |")
    print("|---|---|---|---|")
    for r in results:
        if r.get("status") == "survived":
            print(f"| {r['module']} | {r['line']} | {r['mutation']} | `{r['source'][:80]}` |")
    for mod in modules:
        rs = [r for r in results if r["module"] == mod and "status" in r]
        k = sum(r["status"] in ("killed", "timeout") for r in rs)
        s = sum(r["status"] == "survived" for r in rs)
        print(f"\n{mod}: {k} killed, {s} survived, {len(rs) - k - s} invalid", end="")
    print()


def recheck(args):
    with open(args.recheck) as fh:
        earlier = [r for r in json.load(fh) if r.get("status") == "survived"]
    work = args.workdir
    if os.path.exists(work):
        shutil.rmtree(work)
    for sub in ("fastmix", "tests"):
        shutil.copytree(os.path.join(ROOT, sub), os.path.join(work, sub),
                        ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy2(os.path.join(ROOT, "pyproject.toml"), os.path.join(work, "pyproject.toml"))
    out = []
    for r in earlier:
        mod = r["module"]
        src_path = os.path.join(work, mod)
        with open(os.path.join(ROOT, mod)) as fh:
            original = fh.read()
        tree = ast.parse(original)
        points = [p for p in mutation_points(tree) if p[2] == r["line"] and p[3] == r["mutation"]]
        status = "not found"
        for point in points:
            with open(src_path, "w") as fh:
                fh.write(ast.unparse(apply(tree, point)))
            status, sec, tail = run_tests(work, RECHECK[mod], args.timeout or 600)
            if status == "survived":
                break
        with open(src_path, "w") as fh:
            fh.write(original)
        out.append(dict(r, recheck=status))
        print(f"{mod}:{r['line']} {r['mutation']}: {status}  {r.get('source', '')[:70]}",
              file=sys.stderr, flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    print("| module | line | mutation | source | wider tests |")
    print("|---|---|---|---|---|")
    for r in out:
        print(f"| {r['module']} | {r['line']} | {r['mutation']} | `{r.get('source', '')[:70]}` "
              f"| {r['recheck']} |")


if __name__ == "__main__":
    main()
