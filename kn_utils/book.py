"""The committed record as a website (Jupyter Book) and a lab-meeting deck (reveal.js through sphinx-revealjs).

Both are built from what is committed (executed notebooks, results/, figures/, README.md, docs/) and execute nothing:
the narrative's numbers come from the result files through `report` and `claims`, as the README's do.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from .provenance import REPO_ROOT, read_json

BOOK_DIR = REPO_ROOT / "build" / "book"  # sources under src/, the site under html/
SLIDES_DIR = REPO_ROOT / "build" / "slides"
RECORDS = (("full", "The study (profile full)", "notebooks"),  # profile, part caption, its executed notebooks
           ("full-accession", "Homology-aware re-run (profile full-accession)", "notebooks/full-accession"),
           ("full-ffn", "Feed-forward units of the same model (profile full-ffn)", "notebooks/full-ffn"),
           ("full-identity50", "Identity split at 50 %, notebooks 01-02 (profile full-identity50)", "notebooks/full-identity50"),
           ("full-identity30", "Identity split at 30 %, notebooks 01-02 (profile full-identity30)", "notebooks/full-identity30"),
           ("full-seed1", "Training seed 1 (profile full-seed1)", "notebooks/full-seed1"),  # seed parts: once published
           ("full-seed1-ffn", "Training seed 1, feed-forward units (profile full-seed1-ffn)", "notebooks/full-seed1-ffn"),
           ("full-seed2", "Training seed 2 (profile full-seed2)", "notebooks/full-seed2"),
           ("full-seed2-ffn", "Training seed 2, feed-forward units (profile full-seed2-ffn)", "notebooks/full-seed2-ffn"),
           ("control", "Positive control (profile control)", "notebooks/control"))
RESULTS_HEADING, RESULTS_END = "## Results", "## How the study is built"  # README's part the Results page shows
BOOK_EXTENSIONS = ["sphinx_togglebutton", "sphinx_copybutton", "myst_nb", "jupyter_book", "sphinx_external_toc",
                   "sphinx_design", "sphinx_book_theme"]  # Jupyter Book's, less thebe and comments (scripts from a CDN)
SITE_CSS = (".bd-page-width { max-width: 100%; }\nimg { max-width: 100%; height: auto; }\n"
            "table { font-size: 0.9em; }\n")  # the whole screen for Table 1 and the figures
DECK_CSS = (".reveal section img { max-height: 430px; margin: 0; }\n.reveal table { font-size: 0.55em; }\n"
            ".reveal section { font-size: 0.75em; }\n.reveal h1 { font-size: 1.6em; text-transform: none; }\n")


def _readme_parts(readme: Path) -> tuple[str, str, str]:
    """README's opening (question, weights, headline table, the map of the study), its Results part, and the rest
    (how the study is built, layout, running, tests)."""
    text = readme.read_text(encoding="utf-8")
    for heading in (RESULTS_HEADING, RESULTS_END):
        if f"\n{heading}\n" not in text:
            raise ValueError(f"{readme}: no '{heading}' heading; the book takes the README's parts between them")
    opening, rest = text.split(f"\n{RESULTS_HEADING}\n", 1)
    results, usage = rest.split(f"\n{RESULTS_END}\n", 1)
    return opening, f"{RESULTS_HEADING}\n{results}", f"{RESULTS_END}\n{usage}"


def _book_links(text: str, first_pages: dict[str, str], prefix: str = "") -> str:
    """Links of the README and docs/ as the book lays them out: README's parts are pages, a record's folder of
    notebooks is its first page (`first_pages`: folder -> page)."""
    text = text.replace("../README.md#results", "../results.md").replace("../README.md#", "../usage.md#")
    text = text.replace("../README.md", "../index.md")
    for folder, page in first_pages.items():
        text = text.replace(f"]({prefix}{folder}/)", f"]({prefix}{page})")
    return text


def _notebook_title(path: Path) -> str:
    """A notebook's first Markdown heading, without the '#'s."""
    import nbformat

    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
            return cell.source.lstrip().splitlines()[0].lstrip("#").strip()
    return path.stem


def _record_part(repo: Path, source: Path, profile: str, caption: str, folder: str) -> dict | None:
    """Copy one record's executed notebooks into the book and return its table-of-contents part (None if absent)."""
    notebooks = sorted((repo / folder).glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        return None
    target = source / "record" / profile
    target.mkdir(parents=True, exist_ok=True)
    chapters = []
    for notebook in notebooks:
        shutil.copy2(notebook, target / notebook.name)
        title = _notebook_title(notebook) + ("" if profile == "full" else f" ({profile})")
        chapters.append({"file": f"record/{profile}/{notebook.stem}", "title": title})
    return {"caption": caption, "chapters": chapters}


def book_config(title: str) -> dict:
    """Jupyter Book's _config.yml: nothing executed, nothing fetched from the network at build or view time."""
    return {"title": title, "author": "the kn_utils study", "only_build_toc_files": True,
            "execute": {"execute_notebooks": "off"},
            "html": {"use_repository_button": False, "use_issues_button": False, "use_edit_page_button": False,
                     "use_multitoc_numbering": False},
            "launch_buttons": {"notebook_interface": "classic", "thebe": False, "binderhub_url": "", "colab_url": ""},
            "parse": {"myst_enable_extensions": ["colon_fence"]},
            "sphinx": {"config": {"extensions": BOOK_EXTENSIONS, "nb_ipywidgets_js": {}, "html_show_sourcelink": False, "html_css_files": ["site.css"],
                                  "html_static_path": ["_static"], "suppress_warnings": ["myst.header", "mystnb.unknown_mime_type"],
                                  "myst_heading_anchors": 3, "html_context": {"default_mode": "light"},
                                  "html_theme_options": {"search_bar_text": "Search the study..."}}}}


def book_source(source: Path, repo: Path = REPO_ROOT) -> list[str]:
    """Write the book's sources under `source` from the committed record of `repo`; return its page paths."""
    if source.exists():
        shutil.rmtree(source)
    (source / "_static").mkdir(parents=True)
    (source / "_static" / "site.css").write_text(SITE_CSS)
    if (repo / "figures").exists():
        shutil.copytree(repo / "figures", source / "figures")
    parts, first_pages = [], {}  # a record's folder of notebooks -> its first page
    for profile, caption, folder in RECORDS:
        if part := _record_part(repo, source, profile, caption, folder):
            parts.append(part)
            first_pages[folder] = f"{part['chapters'][0]['file']}.ipynb"
    opening, results, usage = _readme_parts(repo / "README.md")
    title = opening.splitlines()[0].lstrip("#").strip()
    for page, text in (("index", opening), ("results", results), ("usage", usage)):
        (source / f"{page}.md").write_text(_book_links(text, first_pages))
    parts.append({"caption": "Results and use", "chapters": [{"file": "results", "title": "Results (from results/*.json)"},
                                                             {"file": "usage", "title": "How it is built and run"}]})
    docs = sorted((repo / "docs").glob("*.md"))
    if docs:
        (source / "docs").mkdir()
        for doc in docs:
            (source / "docs" / doc.name).write_text(_book_links(doc.read_text(encoding="utf-8"), first_pages, "../"))
        parts.append({"caption": "Notes", "chapters": [{"file": f"docs/{doc.stem}"} for doc in docs]})
    (source / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "index", "parts": parts}, sort_keys=False))
    (source / "_config.yml").write_text(yaml.safe_dump(book_config(title), sort_keys=False))
    return ["index"] + [chapter["file"] for part in parts for chapter in part["chapters"]]


def _run(command: list[str], what: str) -> None:
    """Run a build command; on failure, raise with the tail of its output."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n{tail}")


def build_book(out: Path = BOOK_DIR, repo: Path = REPO_ROOT) -> Path:
    """Build the site from the committed record; return the folder holding index.html."""
    source = out / "src"
    book_source(source, repo)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    _run([str(jupyter_book if jupyter_book.exists() else "jupyter-book"), "build", str(source), "--path-output", str(out),
          "--all", "-q"], "jupyter-book build")
    return out / "_build" / "html"


def _claims_by_run(results: Path) -> pd.DataFrame:
    """Each claim of the paper per published run (the study, the homology-aware run, the positive control): where it
    holds (kept fractions, selection rules), or 'none'."""
    from .claims import run_claims

    runs = {"study": results, "homology-aware": results / "full-accession", "positive control": results / "control"}
    columns = {}
    for name, folder in runs.items():
        if (folder / "ablation.json").exists() and (folder / "heatmaps.json").exists():
            rows = pd.DataFrame(run_claims(folder))
            rows["at"] = rows["at"].str.removesuffix(" kept")
            columns[name] = rows.groupby("claim", sort=False).apply(
                lambda group: ", ".join(group.loc[group["holds"], "at"]) or "none", include_groups=False)
    return pd.DataFrame(columns).fillna("").rename_axis("claim (holds at)").reset_index() if columns else pd.DataFrame()


def deck_markdown(repo: Path = REPO_ROOT) -> str:
    """The lab-meeting deck, one slide per '#' section: question, weights, method, Table 1 beside the paper's,
    figure 2, where the kept neurons sit, what the controls say."""
    from .report import _claim_answers, _markdown_safe, headline

    results = repo / "results"
    finetune, data = read_json(results / "finetune.json"), read_json(results / "data.json")
    ig, heatmaps = read_json(results / "integrated_gradients.json"), read_json(results / "heatmaps.json")
    claims = _claims_by_run(results)
    weights = ("**random init, not pretrained ESM-2** (the same architecture, trained from scratch)"
               if finetune.get("init") != "pretrained" else f"pretrained `{finetune.get('model_source')}`")
    slides = [
        ["# Knowledge neurons in ESM-2", "",
         "Which of the query/key/value neurons of a fine-tuned ESM-2 classifier carry its knowledge?", "",
         f"Weights: {weights}.", "",
         "Following Nori, Singireddy, Ten Have, *Identification of Knowledge Neurons in Protein Language Models* "
         "(arXiv 2312.10770)."],
        ["# The question and the method", "",
         f"- ESM-2 with a linear head tells {len(data['counts']['test'])} EC classes apart: test accuracy "
         f"{finetune['accuracy']:.4f} on {data['n_test']:,} chains (majority class {finetune['majority_baseline']:.4f}).",
         f"- Score the {ig.get('n_neurons', 5760):,} q/k/v neurons by activation and by integrated gradients.",
         "- Keep 50 / 25 / 10 / 1 % of them, zero the rest, and compare accuracy with random kept sets.",
         "- Draw where the kept neurons sit; test the paper's claims against random sets (Holm-corrected)."],
        ["# Table 1: ours beside the paper's", "", headline(results).split("\n\n", 1)[1].split("\n\n")[0], "",
         "Ours: random init; the paper's: pretrained. Random: mean ± sd over seeds."],
        ["# Accuracy kept against the kept fraction", "", "![Figure 2](figures/05_figure2_accuracy.png)"],
        ["# Where the kept neurons sit", "", "![heatmaps](figures/06_kept_heatmaps.png)", "",
         *_claim_answers(pd.DataFrame(heatmaps["tests"]))],
    ]
    if not claims.empty:
        slides.append(["# What the controls say", "", "Each claim per run (the homology-aware split; the positive "
                       "control, where the truth is planted):", "",
                       claims.apply(_markdown_safe).to_markdown(index=False)])
    return "\n\n".join("\n".join(slide) for slide in slides) + "\n"


def build_slides(out: Path = SLIDES_DIR, repo: Path = REPO_ROOT) -> Path:
    """Render the deck with sphinx-revealjs (reveal.js ships inside it: the deck opens offline); return its HTML file."""
    source = out / "src"
    if source.exists():
        shutil.rmtree(source)
    (source / "_static").mkdir(parents=True)
    (source / "_static" / "deck.css").write_text(DECK_CSS)
    shutil.copytree(repo / "figures", source / "figures")
    (source / "index.md").write_text(deck_markdown(repo))
    (source / "conf.py").write_text(
        'project = "Knowledge neurons in ESM-2"\nextensions = ["myst_parser", "sphinx_revealjs"]\n'
        'revealjs_static_path = ["_static"]\nrevealjs_css_files = ["deck.css"]\nrevealjs_style_theme = "white"\n'
        'revealjs_script_conf = {"hash": True, "slideNumber": True}\nsuppress_warnings = ["myst.header"]\n')
    _run([sys.executable, "-m", "sphinx", "-b", "revealjs", "-q", str(source), str(out / "html")], "sphinx-build (revealjs)")
    return out / "html" / "index.html"
