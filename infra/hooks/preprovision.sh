#!/bin/sh
# azd preprovision: refuse, before anything is created, an infra/plans.json (the app's SLUICE_PLANS) that
# the app would refuse, or one with a raw window the storage lifecycle backstop would cut into
# (SLUICE_RAW_BACKSTOP_DAYS; infra/hooks/deploy.py check-plans).
set -eu
SLUICE_ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)
. "$SLUICE_ROOT/infra/hooks/env.sh"
PYTHONPATH="$SLUICE_ROOT" "$(system_python)" "$SLUICE_ROOT/infra/hooks/deploy.py" check-plans
