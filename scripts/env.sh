# Sourced by the scripts: makes .venv with the project, its dev tools and the MySQL driver
# package (drivers/mysql), once per change of either pyproject.toml.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
stamp=".venv/.installed-$(cat pyproject.toml drivers/mysql/pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[server,dev]'
  .venv/bin/python -m pip install --quiet -e drivers/mysql
  rm -f .venv/.installed-*
  touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
