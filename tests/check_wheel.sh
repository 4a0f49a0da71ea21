#!/usr/bin/env bash
# The installed-package check (run by `make test`): build the wheel, install it into a bare folder,
# and use it from outside the repository as a new user would, with semcontrib imported from there.
set -euo pipefail
PY=${PY:-$(pwd)/.venv/bin/python}
REPO=$(pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation . -w "$WORK/dist" >/dev/null 2>&1 \
  || "$PY" -m pip wheel --quiet --no-deps . -w "$WORK/dist" >/dev/null
WHEEL=$(ls "$WORK"/dist/semcontrib-*.whl)
"$PY" - "$WHEEL" <<'PYEOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
top = sorted({n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))})
assert top == ["semcontrib"], f"the wheel must install one top-level package, semcontrib; it has {top}"
for needed in ("semcontrib/data/imagenet_class_groups.json", "semcontrib/dashboard/app.py",
               "semcontrib/segmentation/grid.py", "semcontrib/__main__.py", "semcontrib/engine/run.py",
               "semcontrib/store/work.py", "semcontrib/methods/base.py", "semcontrib/training/run.py",
               "semcontrib/model/checkpoint.py"):
    assert needed in names, f"{needed} missing from the wheel"
print(f"wheel: {len(names)} files, one top-level package: semcontrib")
PYEOF
"$PY" -m pip install --quiet --no-deps --target "$WORK/T" "$WHEEL" >/dev/null
mkdir -p "$WORK/elsewhere" && cd "$WORK/elsewhere"
export PYTHONPATH="$WORK/T"
"$PY" -c "import semcontrib, sys; assert semcontrib.__file__.startswith(sys.argv[1]), semcontrib.__file__" "$WORK/T"
"$PY" -m semcontrib --version
"$PY" -c "from semcontrib.demo import write_demo_images; write_demo_images('photos')" >/dev/null
"$PY" -m semcontrib -q analyze photos --out C --methods gradcam --regions grid
"$PY" -c "
import semcontrib, sys
from semcontrib.corpus import Corpus
c = Corpus.open('C')
assert semcontrib.__file__.startswith(sys.argv[1])
import pkgutil, importlib
for m in pkgutil.walk_packages(semcontrib.__path__, 'semcontrib.'):  # every subpackage, from the wheel
    if m.ispkg:
        importlib.import_module(m.name)
# no module may come from the repository (an editable install's finder would supply what the wheel lacks)
stray = sorted(n for n, mod in sys.modules.items() if n.startswith('semcontrib')
               and not str(getattr(mod, '__file__', None) or sys.argv[1]).startswith(sys.argv[1]))
assert not stray, f'imported from outside the installed wheel: {stray}'
assert (c.images.status == 'ok').sum() >= 10 and set(c.contributions.method) == {'gradcam'}, c.images
print('installed wheel analysed', (c.images.status == 'ok').sum(), 'photographs from outside the repository')
" "$WORK/T"
