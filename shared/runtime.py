"""The composition root: settings are read and adapters built once per process, on first use (not at
import, so a cold start stays cheap), and shared by every invocation."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.settings import Settings
from shared.telemetry import configure_telemetry

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.agents import Enrollment
    from shared.audit import AuditLog, AuthFailureRecorder
    from shared.azure_storage import BlobRawStore, TableAgentRegistry, TableWorkspaceRegistry
    from shared.dcrs import TableDcrRegistry
    from shared.ingest import AgentIngest, DataCollectorIngest, LimitedWriter
    from shared.logs_ingestion import LogsIngest
    from shared.query import Queries
    from shared.readers import ReaderAuthenticator, TableReaderGrants
    from shared.sql import Database
    from shared.workspaces import SecretStore, WorkspaceDirectory

DIRECTORY_CACHE_TTL_SECONDS = 30.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    raw_store: BlobRawStore
    registry: TableWorkspaceRegistry
    secrets: SecretStore
    directory: WorkspaceDirectory
    agents: TableAgentRegistry
    dcrs: TableDcrRegistry
    database: Database
    writer: LimitedWriter  # every path that stores raw data: held to the plan's rate and daily cap
    data_collector: DataCollectorIngest
    agent_ingest: AgentIngest
    logs_ingestion: LogsIngest
    enrollment: Enrollment
    audit: AuditLog
    auth_failures: AuthFailureRecorder
    reader_grants: TableReaderGrants
    readers: ReaderAuthenticator  # who may use the query API
    queries: Queries


def secret_store(settings: Settings) -> SecretStore:
    if settings.secrets.key_vault_uri:
        from shared.azure_storage import credential_for
        from shared.keyvault import KeyVaultSecretStore

        return KeyVaultSecretStore.connect(settings.secrets.key_vault_uri, credential_for(settings.storage))
    from shared.secretstore import LocalSecretStore

    assert settings.secrets.local_dir is not None
    return LocalSecretStore(settings.secrets.local_dir)


def build_services(settings: Settings) -> Services:
    from concurrent.futures import ThreadPoolExecutor

    from shared.agents import Enrollment
    from shared.audit import AuditLog, AuthFailureRecorder
    from shared.audit_store import TableAuditStore
    from shared.azure_limits import TableDailyCounters
    from shared.azure_storage import (
        BlobRawStore,
        TableAgentRegistry,
        TableReplayGuard,
        TableWorkspaceRegistry,
        blob_service,
        table_service,
    )
    from shared.certauth import CertificateAuthenticator
    from shared.dcrs import RuleDirectory, TableDcrRegistry
    from shared.ingest import AgentIngest, DataCollectorIngest, LimitedWriter, RawWriter
    from shared.limits import DailyCap, IngestionRate, IngestLimits
    from shared.logs_ingestion import LogsIngest
    from shared.query import ContinuationSigner, Queries, continuation_key
    from shared.readers import READER_AUDIENCE, ReaderAuthenticator, TableReaderGrants
    from shared.sql.azure import database_for
    from shared.tokens import TokenValidator, signing_keys, token_validator
    from shared.workspaces import WorkspaceDirectory

    tables = table_service(settings.storage)
    raw_store = BlobRawStore(blob_service(settings.storage))
    registry = TableWorkspaceRegistry(tables)
    agents = TableAgentRegistry(tables)
    dcrs = TableDcrRegistry(tables)
    secrets = secret_store(settings)
    directory = WorkspaceDirectory(
        registry=registry, secrets=secrets, cache_ttl_seconds=DIRECTORY_CACHE_TTL_SECONDS
    )
    # Every ingest path stores through this writer, so every one is held to the plan's rate and cap.
    writer = LimitedWriter(
        RawWriter(raw_store),
        IngestLimits(plans=settings.plans, rate=IngestionRate(), cap=DailyCap(TableDailyCounters(tables))),
    )
    certificates = CertificateAuthenticator(
        agents=agents,
        replay=TableReplayGuard(tables),
        clock=utc_now,
        trust_forwarded_client_cert=settings.trust_forwarded_client_cert,
    )
    audit = AuditLog(TableAuditStore(tables), clock=utc_now)
    database = database_for(settings, secrets)
    reader_grants = TableReaderGrants(tables, clock=utc_now)
    return Services(
        settings=settings,
        raw_store=raw_store,
        registry=registry,
        secrets=secrets,
        directory=directory,
        agents=agents,
        dcrs=dcrs,
        database=database,
        writer=writer,
        data_collector=DataCollectorIngest(directory=directory, writer=writer, clock=utc_now),
        agent_ingest=AgentIngest(
            directory=directory, certificates=certificates, writer=writer, clock=utc_now
        ),
        logs_ingestion=LogsIngest(
            tokens=token_validator(settings.tokens),
            rules=RuleDirectory(rules=dcrs, cache_ttl_seconds=DIRECTORY_CACHE_TTL_SECONDS),
            workspaces=directory,
            writer=writer,
            clock=utc_now,
        ),
        enrollment=Enrollment(
            workspaces=registry, secrets=secrets, agents=agents, audit=audit, clock=utc_now
        ),
        audit=audit,
        # One background writer: an authentication failure is answered without waiting on storage.
        auth_failures=AuthFailureRecorder(
            audit,
            clock=utc_now,
            executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-audit"),
        ),
        reader_grants=reader_grants,
        readers=ReaderAuthenticator(
            workspaces=directory,
            grants=reader_grants,
            tokens=None
            if settings.tokens is None
            else TokenValidator(
                issuer=settings.tokens.issuer,
                keys=signing_keys(settings.tokens.jwks_uri),
                audiences=(READER_AUDIENCE,),
            ),
        ),
        queries=Queries(
            readers=database.reader,
            counters=TableDailyCounters(tables),
            plans=settings.plans,
            signer=ContinuationSigner(lambda: continuation_key(secrets)),
            clock=utc_now,
        ),
    )


_services: Services | None = None
_lock = threading.Lock()


def services() -> Services:
    global _services
    with _lock:
        if _services is None:
            settings = Settings.from_env()
            configure_telemetry(
                level=settings.log_level,
                appinsights_connection_string=settings.appinsights_connection_string,
                credential=telemetry_credential(settings),
            )
            _services = build_services(settings)
        return _services


def telemetry_credential(settings: Settings) -> TokenCredential | None:
    """The app's identity where storage uses one too (Azure); none with connection strings (local)."""
    if not settings.appinsights_connection_string or settings.storage.connection_string:
        return None
    from shared.azure_storage import credential_for

    return credential_for(settings.storage)


def reset_services() -> None:
    """Forget the built services so the next call reads the settings again (tests, the local host)."""
    global _services
    with _lock:
        if _services is not None:
            _services.auth_failures.flush()
            _services.database.close()
        _services = None
