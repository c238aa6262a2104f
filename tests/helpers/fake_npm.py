"""A fake ``npm`` executable for installer tests: a real subprocess that never reaches a registry.

``fake_npm(bin_dir)`` writes ``bin_dir/npm``, a shell script that handles ``npm install --prefix
DIR ... PACKAGE@VERSION`` like npm would for our purposes: it prints npm-style progress lines,
then writes ``DIR/node_modules/PACKAGE/package.json`` and an executable
``DIR/node_modules/.bin/<binary>`` that answers ``--version``. Each call's arguments are appended
to ``DIR/npm-calls.log``. ``$FAKE_NPM`` (else the content of ``DIR/fake-npm-mode``, for a
running server) picks a failure instead: ``enotfound`` (registry unreachable), ``e404`` (no such
package), ``nobin`` (exits 0, installs nothing), ``hang`` (waits on a child ``sleep`` whose pid
it writes to ``DIR/child.pid``).
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox_agent.agents.catalog import SPECS

#: The npm packages of the catalog.
PACKAGES = [spec.npm for spec in SPECS.values() if spec.npm is not None]

_SCRIPT = r"""#!/bin/sh
prefix=""
spec=""
all="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix|--loglevel) [ "$1" = --prefix ] && prefix="$2"; shift 2; continue ;;
    install|-*) ;;
    *) spec="$1" ;;
  esac
  shift
done
mkdir -p "$prefix"
echo "$all" >> "$prefix/npm-calls.log"
if [ -z "$FAKE_NPM" ] && [ -f "$prefix/fake-npm-mode" ]; then
  FAKE_NPM=$(cat "$prefix/fake-npm-mode")
fi
echo "npm http fetch GET 200 https://registry.npmjs.org/${spec%@*} 12ms (cache miss)"
case "$FAKE_NPM" in
  enotfound)
    echo "npm error code ENOTFOUND"
    echo "npm error network request to https://registry.npmjs.org/x failed, reason:" \
      "getaddrinfo ENOTFOUND registry.npmjs.org"
    exit 1 ;;
  e404)
    echo "npm error code E404"
    echo "npm error 404 Not Found - GET https://registry.npmjs.org/x - Not found"
    exit 1 ;;
  nobin)
    echo "up to date in 1s"
    exit 0 ;;
  hang)
    sleep 300 &
    echo $! > "$prefix/child.pid"
    wait
    exit 1 ;;
esac
pkg="${spec%@*}"
version="${spec##*@}"
case "$pkg" in
__BINARIES__
  *) echo "npm error 404 no such package $pkg"; exit 1 ;;
esac
sleep 0.2
echo "npm http fetch GET 200 https://registry.npmjs.org/$pkg/-/$version.tgz 40ms (cache miss)"
mkdir -p "$prefix/node_modules/$pkg" "$prefix/node_modules/.bin"
printf '{"name": "%s", "version": "%s"}\n' "$pkg" "$version" \
  > "$prefix/node_modules/$pkg/package.json"
printf '#!/bin/sh\necho "%s (fake)"\n' "$version" > "$prefix/node_modules/.bin/$bin"
chmod +x "$prefix/node_modules/.bin/$bin"
echo "added 1 package in 1s"
"""


def fake_npm(bin_dir: Path) -> Path:
    """Write the fake ``npm`` into ``bin_dir`` (created); returns its path."""
    binaries = "\n".join(
        f"  {p.package}) bin={p.binary} ;;" for p in {p.package: p for p in PACKAGES}.values()
    )
    bin_dir.mkdir(parents=True, exist_ok=True)
    npm = bin_dir / "npm"
    npm.write_text(_SCRIPT.replace("__BINARIES__", binaries))
    npm.chmod(0o755)
    return npm


def path_without_agents(*first: Path) -> str:
    """``PATH`` with ``first`` in front (a fake ``npm`` there shadows the real one) and without
    the directories holding an agent CLI."""
    names = {p.binary for p in PACKAGES}
    kept = [
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not any((Path(d) / n).exists() for n in names)
    ]
    return os.pathsep.join([*map(str, first), *kept])
