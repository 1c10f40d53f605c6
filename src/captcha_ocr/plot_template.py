"""An HTML template for `dvc plots show --html-template` that renders offline.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so plots are
blank without a network. This template inlines the same libraries, bundled by
vl-convert-python (a PyPI package, pinned in requirements.lock), in one <script>.

    python -m captcha_ocr.plot_template .dvc/plots/offline.html
    dvc plots show --html-template .dvc/plots/offline.html
"""

from __future__ import annotations

import argparse
from pathlib import Path

from captcha_ocr.atomic import atomic_file

# dvc-render fills {plot_divs}; {scripts} (the CDN tags) is left out on purpose.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>captcha-ocr plots</title>
    <script type="text/javascript">
BUNDLE
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def render() -> str:
    import vl_convert

    # DVC's templates declare vega-lite v5 specs: bundle the newest 5.x it has.
    fives = [v for v in vl_convert.get_vegalite_versions() if v.startswith("5.")]
    newest = max(fives, key=lambda version: tuple(int(part) for part in version.split(".")))
    return PAGE.replace("BUNDLE", vl_convert.javascript_bundle(vl_version=newest))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, nargs="?", default=Path(".dvc/plots/offline.html"))
    args = parser.parse_args(argv)
    with atomic_file(args.out, "w", encoding="utf-8") as stream:
        stream.write(render())
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB, no remote scripts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
