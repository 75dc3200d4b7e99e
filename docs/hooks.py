"""MkDocs hooks: the pages that are generated, never written by hand.

- ``<!-- generated: parameters -->`` becomes the parameter reference: every key of the params
  document with its type and range from the JSON schema ``workflow/schemas/params.schema.yaml``
  (itself generated from the typed model ``conceptspace/params.py``), the default study's value
  and the comment beside it in ``params.yaml``.
- ``<!-- generated: results -->`` becomes one section per committed study: its
  ``results/<study>/analyze/summary.md``, headline ``metrics.json`` and figures, which are
  copied into the site under ``results/<study>/``.
- ``<!-- generated: link reproducibility-dvc -->`` links ``docs/reproducibility-dvc.md`` when
  it exists.

Everything is read from files in the repository; nothing needs the network.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "workflow" / "schemas" / "params.schema.yaml"
PARAMS = ROOT / "params.yaml"
RESULTS = ROOT / "results"
# The order in which committed studies are shown; any other committed study follows.
STUDY_ORDER = ("default", "unseen_seeds", "size_sweep", "reference")
FIGURE_KINDS = (".png", ".gif")


# ---- the parameter reference ------------------------------------------------------------


def _resolve(node: dict, defs: dict) -> dict:
    ref = node.get("$ref")
    if ref:
        return _resolve(defs[ref.rsplit("/", 1)[1]], defs)
    for alt in node.get("anyOf", ()):
        if alt.get("type") != "null":
            return {**_resolve(alt, defs), "nullable": True, **_strip(node)}
    return node


def _strip(node: dict) -> dict:
    return {k: v for k, v in node.items() if k in ("description", "default")}


def _type(node: dict) -> str:
    if "enum" in node:
        return " | ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "object")
    if kind == "array":
        item = node.get("items", {})
        kind = f"list of {item.get('type', 'object')}"
    bounds = []
    for key, sign in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
        ("minItems", "items: at least"),
        ("maxItems", "items: at most"),
        ("pattern", "matches"),
    ):
        if key in node:
            bounds.append(f"{sign} `{node[key]}`" if key == "pattern" else f"{sign} {node[key]}")
    text = kind + (f" ({', '.join(bounds)})" if bounds else "")
    return text + (", or null" if node.get("nullable") else "")


def _walk(node: dict, defs: dict, path: str):
    """(dotted key, schema node) for every key, depth first, in the schema's order."""
    node = _resolve(node, defs)
    for key, child in node.get("properties", {}).items():
        sub = f"{path}.{key}" if path else key
        resolved = _resolve(child, defs)
        yield sub, resolved
        if "properties" in resolved:
            yield from _walk(resolved, defs, sub)
        for pattern, value in resolved.get("patternProperties", {}).items():
            inner = _resolve(value, defs)
            yield f"{sub}.<id>", {**inner, "pattern": pattern}
            yield from _walk(inner, defs, f"{sub}.<id>")


def params_comments(text: str) -> dict[str, str]:
    """Dotted key -> the comment on its line in params.yaml (keys found by indentation)."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        m = re.match(r"^(\s*)([A-Za-z_][\w]*):(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if "#" in rest:
            path = ".".join(k for _, k in stack)
            comments[path] = rest.split("#", 1)[1].strip()
    return comments


def _default(doc, path: str):
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return None, False
        doc = doc[key]
    return doc, True


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def parameter_reference() -> str:
    schema = yaml.safe_load(SCHEMA.read_text())
    defs = schema.get("$defs", {})
    text = PARAMS.read_text()
    params, comments = yaml.safe_load(text), params_comments(text)
    sections: dict[str, list[str]] = {}
    for path, node in _walk(schema, defs, ""):
        top = path.split(".")[0]
        value, present = _default(params, path)
        if isinstance(value, dict) and path.count(".") > 0:
            value_text = "see below"
        elif present and not (isinstance(value, dict) and top == path):
            value_text = f"`{json.dumps(value)}`" if len(json.dumps(value)) <= 40 else "(a list)"
        elif top == path and isinstance(value, dict):
            value_text = "see below" if top != "runs" else ", ".join(f"`{k}`" for k in value)
        else:
            value_text = "-"
        meaning = " ".join(x for x in (node.get("description"), comments.get(path)) if x)
        row = f"| `{path}` | {_cell(_type(node))} | {_cell(value_text)} | {_cell(meaning)} |"
        sections.setdefault(top, []).append(row)
    out = []
    for top, rows in sections.items():
        out += [
            f"### `{top}`",
            "",
            "| key | type and range | default study | meaning |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    return "\n".join(out)


# ---- the results pages -----------------------------------------------------------------


def committed_studies() -> list[str]:
    found = [p.parent.parent.name for p in RESULTS.glob("*/analyze/summary.md")]
    return sorted(found, key=lambda s: (STUDY_ORDER.index(s) if s in STUDY_ORDER else 99, s))


def _figures(study: str) -> list[Path]:
    folder = RESULTS / study / "analyze" / "figures"
    return sorted(p for p in folder.glob("*") if p.suffix in FIGURE_KINDS)


def _demote(markdown: str, levels: int) -> str:
    return re.sub(r"^(#+)", lambda m: m.group(1) + "#" * levels, markdown, flags=re.M)


def results_section(study: str) -> str:
    analyze = RESULTS / study / "analyze"
    summary = (analyze / "summary.md").read_text()
    summary = re.sub(r"^# .*\n", "", summary, count=1)
    metrics = json.loads((analyze / "metrics.json").read_text())
    overlay = "params.yaml" if study == "default" else f"configs/{study}.yaml"
    out = [
        f"## {study}",
        "",
        f"Study `{study}` (params: `{overlay}`; merged document `results/{study}/params.yaml`"
        if study != "default"
        else "The default study (params: `params.yaml`;",
        f"artifacts `results/{study}/`). Generated from `results/{study}/analyze/summary.md`,",
        "`metrics.json` and `figures/` when the site was built.",
        "",
        _demote(summary.strip(), 2),
        "",
        '??? note "metrics.json (headline, as `dvc metrics show` reads it)"',
        "    ```json",
        *("    " + line for line in json.dumps(metrics, indent=2).splitlines()),
        "    ```",
        "",
        "### Figures",
        "",
    ]
    for fig in _figures(study):
        out += [f"**{fig.stem}**", "", f"![{study}: {fig.stem}](results/{study}/{fig.name})", ""]
    return "\n".join(out)


def results_page() -> str:
    studies = committed_studies()
    intro = ", ".join(f"[{s}](#{s})" for s in studies)
    return f"Committed studies: {intro}.\n\n" + "\n\n".join(results_section(s) for s in studies)


# ---- the README's verdict table ---------------------------------------------------------
README = ROOT / "README.md"
README_BLOCK = ("<!-- verdicts: start -->", "<!-- verdicts: end -->")


def readme_verdicts(study: str = "default") -> str:
    """The per-seed verdict table and the table of leads by the class the held-out prompt
    first imitates, from a study's ``summary.md`` (the tables that open with ``| seed |`` and
    ``| first imitates |``), as the README shows them between its markers."""
    lines = (RESULTS / study / "analyze" / "summary.md").read_text().splitlines()
    tables = []
    for header in ("| seed |", "| first imitates |"):
        start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
        if start is None:
            continue
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), None)
        tables.append("\n".join(lines[start:end]))
    return "\n\n".join(tables)


def write_readme_verdicts() -> None:
    """Refresh the README's table from the committed summary: ``python docs/hooks.py``."""
    text = README.read_text()
    head, rest = text.split(README_BLOCK[0], 1)
    _, tail = rest.split(README_BLOCK[1], 1)
    block = f"{README_BLOCK[0]}\n{readme_verdicts()}\n{README_BLOCK[1]}"
    README.write_text(head + block + tail)


# ---- MkDocs events ---------------------------------------------------------------------


def on_files(files, config):
    """Put every committed study's figures into the site beside the results page."""
    for study in committed_studies():
        for fig in _figures(study):
            files.append(
                File.generated(config, f"results/{study}/{fig.name}", abs_src_path=str(fig))
            )
    return files


def on_page_markdown(markdown, page, config, files):
    if "<!-- generated: parameters -->" in markdown:
        markdown = markdown.replace("<!-- generated: parameters -->", parameter_reference())
    if "<!-- generated: results -->" in markdown:
        markdown = markdown.replace("<!-- generated: results -->", results_page())
    marker = "<!-- generated: link reproducibility-dvc -->"
    if marker in markdown:
        here = Path(config["docs_dir"]) / "reproducibility-dvc.md"
        link = (
            "[Reproducibility with DVC](reproducibility-dvc.md)"
            if here.is_file()
            else "`docs/reproducibility-dvc.md`"
        )
        markdown = markdown.replace(marker, link)
    return markdown


if __name__ == "__main__":
    write_readme_verdicts()
