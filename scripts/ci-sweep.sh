#!/usr/bin/env bash
# The shell steps of .github/workflows/sweep.yml, runnable locally (tests/ci_sweep.rs runs them):
# run a sweep recipe with the cache restored, keep the cache bounded to what the recipe reaches,
# and write the comparison of its variants as markdown to the job summary.
#
#   scripts/ci-sweep.sh [RECIPE]     (default recipes/sweep_lr.toml)
#
# HWRUN: the hwrun binary (default `hwrun` on PATH); HWRUN_CACHE: the cache (default ./cache);
# GITHUB_STEP_SUMMARY: where the markdown goes (default: stdout).
set -euo pipefail
recipe=${1:-recipes/sweep_lr.toml}
hwrun=${HWRUN:-hwrun}
summary=${GITHUB_STEP_SUMMARY:-/dev/stdout}

"$hwrun" run --device cpu "$recipe"
"$hwrun" gc "$recipe"
{
    echo "## \`$recipe\`"
    echo
    "$hwrun" compare --md "$recipe"
} >>"$summary"
