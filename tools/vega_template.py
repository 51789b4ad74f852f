"""Write the page template for `dvc plots show --html-template`: DVC's own page with Vega,
Vega-Lite and Vega-Embed inlined from vega/node_modules (`make vega` installs them and runs this).

  python -m tools.vega_template vega/offline.html

DVC's default page loads the three scripts from a CDN, so offline it stays blank. They are
inlined rather than referenced by path because DVC writes the page to <cwd>/<out>/index.html:
a relative src breaks when `dvc plots show` runs from a subdirectory or with -o, and an
absolute one ties the page to this checkout's node_modules. The inlined page (about 0.8 MB)
works wherever it is opened or copied.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dvc_render.html import PAGE_HTML

NODE_MODULES = Path(__file__).resolve().parent.parent / "vega" / "node_modules"
# The default page's order: Vega-Lite and Vega-Embed read the globals the ones before set.
PACKAGES = {
    "vega": "build/vega.min.js",
    "vega-lite": "build/vega-lite.min.js",
    "vega-embed": "build/vega-embed.min.js",
}
INSTALL = "run `make vega` (npm ci in vega/)"
# DVC fills a template by str.replace of these over the whole page, and an HTML parser ends
# an inline script at `</script` (and `<!--` can change how it reads up to there).
UNSAFE = ("{plot_divs}", "{scripts}", "{refresh_tag}", "</script", "<!--")


def scripts(node_modules: Path = NODE_MODULES) -> str:
    """The three builds as inline <script> elements, each headed by its package version."""
    missing = [
        name for name, build in PACKAGES.items() if not (node_modules / name / build).is_file()
    ]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not in {node_modules}: {INSTALL}")
    elements = []
    for name, build in PACKAGES.items():
        code = (node_modules / name / build).read_text(encoding="utf8")
        unsafe = [s for s in UNSAFE if s in code.lower()]
        if unsafe:
            raise ValueError(f"{name}/{build} contains {unsafe}: it cannot be inlined as is")
        version = json.loads((node_modules / name / "package.json").read_text())["version"]
        elements.append(f"<script>/* {name} {version} */\n{code}\n</script>")
    return "\n".join(elements)


def template(node_modules: Path = NODE_MODULES) -> str:
    """DVC's default page (dvc_render's PAGE_HTML) with the local scripts for its CDN ones."""
    if "{scripts}" not in PAGE_HTML:
        raise RuntimeError("dvc_render's PAGE_HTML has no {scripts} placeholder any more")
    return PAGE_HTML.replace("{scripts}", scripts(node_modules))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the template to write, e.g. vega/offline.html")
    out = parser.parse_args().out
    out.write_text(template(), encoding="utf8")


if __name__ == "__main__":
    main()
