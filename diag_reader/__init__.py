"""Every 5 minutes: reads each registered Azure Diagnostics source's tables from its checkpoints into
raw Perf / Event / Syslog blobs of its workspace, which process_blob then aggregates."""

import azure.functions as func

from shared.runtime import services


def main(timer: func.TimerRequest) -> None:
    # The Table SDK loads on the first invocation, not at import, as the clients in shared.runtime do.
    from shared.azure_diagnostics import diagnostics_reader

    diagnostics_reader(services()).run()
