"""The README and docs/ name only what exists: links, repository paths, console scripts,
modules and ``--addrop-*`` flags are checked against the tree, setup.py and the options'
dataclass, so a rename fails here instead of leaving the manual wrong; and the README keeps
its first screen (install, use, the generated verdict) within its size limits."""
import ast
import importlib
import importlib.metadata
import re
from dataclasses import fields
from pathlib import Path

import yaml

from addrop_fairseq.options import ADDropOptions, flag_of

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
EVIDENCE = REPO / "docs" / "evidence.md"  # written by experiments/report.py, not by hand
BEGIN = "<!-- experiments:begin"
END = "<!-- experiments:end -->"


def manual():
    """README.md and docs/*.md (docs/evidence.md too once report.py has written it)."""
    return [README] + sorted((REPO / "docs").glob("*.md"))


def project_pages():
    return manual() + [REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md"]


def rel(path):
    return path.relative_to(REPO).as_posix()


def prose_lines(text):
    """(line number, line, kind) with kind "code" inside fenced blocks, "generated" inside the
    report's block, "table" for table rows, else "prose"."""
    out, fence, generated = [], False, False
    for i, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            out.append((i, line, "code"))
            fence = not fence
            continue
        if line.startswith(BEGIN):
            generated = True
        kind = "code" if fence else "generated" if generated else "table" if line.lstrip().startswith("|") else "prose"
        out.append((i, line, kind))
        if line.startswith(END):
            generated = False
    return out


def without_code(text):
    return "\n".join(line for _, line, kind in prose_lines(text) if kind != "code")


def code_blocks(text, lang=None):
    blocks, current, fence_lang = [], None, None
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if current is None:
                current, fence_lang = [], line.strip()[3:].strip()
            else:
                if lang is None or fence_lang == lang:
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' removed, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    for line in without_code(path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def links(path):
    return LINK.findall(without_code(path.read_text(encoding="utf-8")))


# ---------------------------------------------------------------------------- links and paths


def test_every_relative_link_and_anchor_exists():
    bad = []
    for page in project_pages():
        for target in links(page):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if dest == EVIDENCE and not dest.exists():
                continue  # report.py writes it; the regeneration test checks it is there
            if not dest.exists():
                bad.append(f"{rel(page)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{rel(page)}: {target} (no heading with that anchor)")
    assert not bad, "\n".join(bad)


TOP = ("addrop_fairseq", "scripts", "docs", "tests", "experiments", "benchmarks", "examples", "user_dir", ".ci")
PATH = re.compile(r"(?<![\w./~$-])((?:%s)/[\w./*{},-]*)" % "|".join(re.escape(t) for t in TOP))
OUTPUTS = ("experiments/work/",)  # what runs write, not in the repository


def expand(path):
    """Brace alternatives: a/{b,c}.yaml -> a/b.yaml, a/c.yaml."""
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m.group(1).split(",") for p in expand(path[:m.start()] + alt + path[m.end():])]


def named_paths(page):
    for m in PATH.finditer(page.read_text(encoding="utf-8")):
        path = m.group(1).rstrip(".,:;")
        if not path.startswith(OUTPUTS):
            yield path


def made_by_a_command(path: str) -> bool:
    """A folder .gitignore names by its repository path (an output a documented command writes)."""
    ignored = [line.strip().strip("/") for line in (REPO / ".gitignore").read_text().splitlines()
               if "/" in line.strip().rstrip("/") and not line.startswith(("#", "/"))]
    return any(path.strip("/") == x or path.startswith(x + "/") for x in ignored)


def test_every_repository_path_named_exists():
    bad = []
    for page in manual() + [REPO / "CONTRIBUTING.md"]:
        for named in named_paths(page):
            for path in expand(named):
                if (REPO / path) == EVIDENCE and not EVIDENCE.exists():
                    continue
                if made_by_a_command(path):  # e.g. benchmarks/gpu_inputs/: gpu_prepare.sh writes it
                    continue
                found = list(REPO.glob(path)) if "*" in path else [REPO / path] if (REPO / path).exists() else []
                if not found:
                    bad.append(f"{rel(page)}: {named}")
    assert not bad, "\n".join(bad)


def test_every_module_named_exists():
    """``addrop_fairseq.x.y`` (python -m, imports) is a module, or an attribute of one."""
    bad = []
    for page in manual() + [REPO / "CONTRIBUTING.md"]:
        for dotted in set(re.findall(r"(?<![\w/.])addrop_fairseq(?:\.\w+)+", page.read_text(encoding="utf-8"))):
            parts = dotted.split(".")
            k = 1
            while k < len(parts) and ((REPO.joinpath(*parts[:k + 1]).with_suffix(".py")).exists()
                                      or REPO.joinpath(*parts[:k + 1], "__init__.py").exists()):
                k += 1
            obj = importlib.import_module(".".join(parts[:k]))
            for name in parts[k:]:
                if not hasattr(obj, name):
                    bad.append(f"{rel(page)}: {dotted}")
                    break
                obj = getattr(obj, name)
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------------------- commands and flags


NOT_COMMANDS = {"fairseq-fixed", "fairseq-free"}  # the package on PyPI; an adjective


def console_scripts():
    text = (REPO / "setup.py").read_text(encoding="utf-8")
    return set(re.findall(r'"([\w-]+)=addrop_fairseq[\w.]*:\w+"', text))


def test_every_console_script_named_is_in_setup_py():
    scripts = console_scripts()
    assert {"addrop-tag", "addrop-explain", "addrop-evaluate"} <= scripts
    fairseq_scripts = {e.name for e in importlib.metadata.distribution("fairseq-fixed").entry_points
                       if e.group == "console_scripts"}
    assert "fairseq-train" in fairseq_scripts
    bad = []
    for page in manual() + [REPO / "CONTRIBUTING.md"]:
        text = page.read_text(encoding="utf-8")
        for name in set(re.findall(r"(?<![\w/.-])(addrop-[a-z]+(?:-[a-z]+)*)", text)) - scripts:
            bad.append(f"{rel(page)}: {name} (not a console script of setup.py)")
        for name in set(re.findall(r"(?<![\w/.-])(fairseq-[a-z]+(?:-[a-z]+)*)", text)) - fairseq_scripts - NOT_COMMANDS:
            bad.append(f"{rel(page)}: {name} (not a console script of fairseq)")
    assert not bad, "\n".join(bad)


def criterion_flags():
    """Every flag of the plugin's criteria: AD-DROP's (options.py) and the baselines'."""
    from addrop_fairseq.criterions.attendout import AttendOutConfig
    from addrop_fairseq.criterions.attention_regularizer import AttentionRegularizerConfig
    from addrop_fairseq.criterions.sentence_prediction_rdrop import SentencePredictionRDropConfig

    names = {f.name for c in (ADDropOptions, AttendOutConfig, AttentionRegularizerConfig,
                              SentencePredictionRDropConfig) for f in fields(c)}
    return {flag_of(n) for n in names}


def test_every_plugin_flag_named_exists():
    """``--addrop-*`` (and ``--addrop_*``, HfArgumentParser's spelling), ``--attendout-*``,
    ``--attn-reg*``, ``--rdrop-*`` and hydra's ``criterion.addrop_*`` are real options."""
    flags = criterion_flags()
    scripts = "".join(p.read_text() for p in sorted((REPO / "scripts").glob("*.sh")))  # e.g. --addrop-args
    bad = []
    for page in project_pages():
        if page.name == "CHANGELOG.md":
            continue  # history may name what was removed
        text = page.read_text(encoding="utf-8")
        for flag in set(re.findall(r"--(?:addrop|attendout|attn-reg|rdrop)[\w-]*", text)):
            if flag.endswith("-"):
                continue  # "--addrop-*", the family
            if flag.replace("_", "-") not in flags and not re.search(re.escape(flag) + r"\b", scripts):
                bad.append(f"{rel(page)}: {flag}")
        for name in set(re.findall(r"criterion\.(addrop_\w+)", text)):
            if flag_of(name) not in flags:
                bad.append(f"{rel(page)}: criterion.{name}")
    assert not bad, "\n".join(bad)


def test_the_options_table_lists_exactly_the_options():
    text = (REPO / "docs" / "options.md").read_text(encoding="utf-8")
    section = text.split("## AD-DROP's options")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(--addrop-[\w-]+)` \| ([^|]+) \|", section, flags=re.M)
    assert [flag for flag, _ in rows] == [flag_of(f.name) for f in fields(ADDropOptions)]
    for (flag, default), f in zip(rows, fields(ADDropOptions)):
        assert default.strip().strip("`") == str(f.default), flag


def test_every_metric_the_criteria_log_is_documented():
    documented = (REPO / "docs" / "options.md").read_text() + (REPO / "docs" / "baselines.md").read_text()
    bad = []
    for source in sorted((REPO / "addrop_fairseq" / "criterions").glob("*.py")):
        for name in re.findall(r'log_scalar\(\s*"(\w+)"', source.read_text()):
            if f"`{name}`" not in documented:
                bad.append(f"{rel(source)}: {name}")
    assert not bad, "\n".join(bad)


def test_python_snippets_parse_and_use_the_real_api():
    """Every Python block compiles; its imports from addrop_fairseq exist; ADDropArguments gets
    only its fields, and the trainers get it as addrop_args."""
    options = {f.name for f in fields(ADDropOptions)}
    checked = 0
    for page in manual():
        for block in code_blocks(page.read_text(encoding="utf-8"), "python"):
            tree = ast.parse(block)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("addrop_fairseq"):
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        assert hasattr(module, alias.name), f"{rel(page)}: {node.module}.{alias.name}"
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    keywords = {k.arg for k in node.keywords}
                    if node.func.id == "ADDropArguments":
                        assert keywords <= options, f"{rel(page)}: {keywords - options}"
                        checked += 1
                    if node.func.id in ("ADDropTrainer", "ADDropSeq2SeqTrainer"):
                        assert "addrop_args" in keywords, rel(page)
    assert checked >= 2  # the README's snippet and docs/huggingface.md's


# ---------------------------------------------------------------------------- the README's layout


def test_readme_first_screen():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, len(lines)
    first = "\n".join(lines[:60])
    heads = [line for line in lines if line.startswith("## ")]
    assert heads[:3] == ["## Install", "## Use", "## Does it work?"], heads
    assert "Yang et al." in "\n".join(lines[:4]) and "NeurIPS 2022" in "\n".join(lines[:4])
    # a fairseq-train command with --criterion addrop_ce (continuation lines included) in the first 60 lines
    commands = re.findall(r"fairseq-train (?:[^\n]*\\\n)*[^\n]*", first)
    assert any("--user-dir addrop_fairseq" in c and "--criterion addrop_ce" in c for c in commands), commands
    assert "ADDropTrainer(" in first
    section = lambda name: "\n".join(lines).split(f"## {name}\n")[1].split("\n## ")[0]
    install = section("Install")
    for needed in ("bash scripts/demo.sh", "bash scripts/test.sh", "pip install torch==2.13.0 && pip install -e .",
                   '".[trainer]"', '".[test]"'):
        assert needed in install, needed
    use = section("Use")
    assert "--addrop-schedule never" in use and "(docs/options.md)" in use
    for option in ("--addrop-p", "--addrop-q", "--addrop-layers"):
        assert f"| `{option}`" in use, option
    (snippet,) = code_blocks(use, "python")
    assert len(snippet.strip().splitlines()) <= 8
    # "Does it work?" is the generated block and nothing else
    block = section("Does it work?").strip()
    assert block.startswith(BEGIN) and block.endswith(END), block[:200]


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links(README) if not re.match(r"[a-z]+:", t)}
    for page in sorted((REPO / "docs").glob("*.md")) + [EVIDENCE, REPO / "docs" / "cost.md"]:
        assert page.resolve() in linked, rel(page)


def test_no_long_prose_lines():
    """Tables and code aside, no line over 200 characters (the README's generated lead included;
    docs/evidence.md is the long generated block, set aside)."""
    bad = []
    for page in project_pages():
        if page == EVIDENCE:
            continue
        for i, line, kind in prose_lines(page.read_text(encoding="utf-8")):
            if kind in ("prose", "generated") and len(line) > 200:
                bad.append(f"{rel(page)}:{i}: {len(line)} characters")
    assert not bad, "\n".join(bad)


COUNT = re.compile(r"\b\d[\d,]*\s+(?:mutants?|tests|passed|failed|CPU-hours?)\b")


def test_no_hand_typed_counts():
    """Counts of tests, mutants or CPU-hours go stale: they are generated or not written."""
    bad = []
    for page in project_pages():
        if page in (EVIDENCE, REPO / "CHANGELOG.md"):
            continue
        for i, line, kind in prose_lines(page.read_text(encoding="utf-8")):
            if kind != "generated" and COUNT.search(line):
                bad.append(f"{rel(page)}:{i}: {COUNT.search(line).group(0)}")
    assert not bad, "\n".join(bad)


def test_architecture_tree_names_every_module():
    """docs/architecture.md's package tree: each module by name, or a folder line describing it."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    tree = text.split("## The package, one line per module")[1].split("```")[1]
    described = {m.group(1) for m in re.finditer(r"^\s*([\w/]+/)\s+\S", tree, flags=re.M)}
    missing = []
    for path in sorted((REPO / "addrop_fairseq").rglob("*.py")):
        parts = path.relative_to(REPO / "addrop_fairseq").parts
        if path.name == "__init__.py" and len(parts) > 1 or path.name.startswith("_") and path.name != "__init__.py":
            continue
        folders = {"/".join(parts[:k]) + "/" for k in range(1, len(parts))}
        if path.name not in tree and not any(f in described or f.split("/")[-2] + "/" in described for f in folders):
            missing.append("/".join(parts))
    assert not missing, missing


# ---------------------------------------------------------------------------- project files


def setup_version():
    return re.search(r'version="([^"]+)"', (REPO / "setup.py").read_text()).group(1)


def test_license_citation_changelog_contributing():
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["version"] == setup_version() and cff["license"] == "MIT"
    paper = cff["preferred-citation"]
    assert paper["title"] == "AD-DROP: Attribution-Driven Dropout for Robust Language Model Fine-Tuning"
    assert [a["family-names"] for a in paper["authors"]] == ["Yang", "Deng", "Quan", "Wang", "Nie"]
    assert paper["year"] == 2022 and "NeurIPS 2022" in paper["collection-title"]
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## {setup_version()}" in changelog and "## Unreleased" in changelog
    contributing = (REPO / "CONTRIBUTING.md").read_text()
    for needed in ("bash scripts/test.sh", 'python -m pytest -m "not slow"', "python experiments/run.py",
                   "python experiments/report.py", "benchmarks/mutation_check.py", "docs/architecture.md"):
        assert needed in contributing, needed

