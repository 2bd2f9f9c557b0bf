"""The Key Vault adapter (shared.keyvault.KeyVaultSecretStore) through the real SecretClient, against
KeyVaultRestEmulator, the replacement for Key Vault at the SDK's HTTP transport (see
tests/support/keyvault_emulator.py for what it implements). Each test has a vault of its own (the SDK
caches authentication challenges per vault host for the whole process)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.keyvault.secrets import SecretClient

from shared.errors import Conflict, NotFound, SecretStoreUnavailable, ServiceUnavailable, SluiceError
from shared.keyvault import KeyVaultSecretStore
from shared.sharedkey import decode_key
from shared.workspaces import (
    NewWorkspace,
    WorkspaceDirectory,
    create_workspace,
    rotate_key,
    shared_key_secret_name,
)
from tests.support.keyvault_emulator import (
    KEY_VAULT_RESOURCE,
    KEY_VAULT_SCOPE,
    KeyVaultRestEmulator,
    StaticTokenCredential,
    new_vault_url,
)
from tests.unit.fakes import MemoryRawStore, MemoryRegistry

TENANT_ID = "8f3c2b1a-0d4e-4f5a-9b6c-7d8e9f0a1b2c"
TOKEN = "static-test-access-token"


@dataclass
class Vault:
    emulator: KeyVaultRestEmulator
    credential: StaticTokenCredential

    def store(self, *, retry_total: int = 0) -> KeyVaultSecretStore:
        client = SecretClient(
            vault_url=self.emulator.vault_url,
            credential=self.credential,
            transport=self.emulator,
            retry_total=retry_total,
        )
        return KeyVaultSecretStore(client)


def make_vault(*, accepted_token: str = TOKEN, challenge_resource: str = KEY_VAULT_RESOURCE) -> Vault:
    emulator = KeyVaultRestEmulator(
        vault_url=new_vault_url(),
        tenant_id=TENANT_ID,
        accepted_token=accepted_token,
        challenge_resource=challenge_resource,
    )
    return Vault(emulator=emulator, credential=StaticTokenCredential(TOKEN))


@pytest.fixture
def vault() -> Vault:
    return make_vault()


Operation = Callable[[KeyVaultSecretStore], object]
OPERATIONS: dict[str, Operation] = {
    "get": lambda store: store.get_secret("ws-key"),
    "set": lambda store: store.set_secret("ws-key", "value"),
    "delete": lambda store: store.delete_secret("ws-key"),
}


# -- secrets --------------------------------------------------------------------------------------


def test_given_secret_set_when_getting_then_value_round_trips(vault: Vault) -> None:
    store = vault.store()

    store.set_secret("ws-abc-primary-key", "c2VjcmV0IGtleQ==")

    assert store.get_secret("ws-abc-primary-key") == "c2VjcmV0IGtleQ=="
    assert vault.emulator.current_value("ws-abc-primary-key") == "c2VjcmV0IGtleQ=="


def test_given_secret_set_twice_when_getting_then_latest_version_is_returned(vault: Vault) -> None:
    store = vault.store()
    store.set_secret("rotating", "first")

    store.set_secret("rotating", "second")

    assert store.get_secret("rotating") == "second"
    assert vault.emulator.version_count("rotating") == 2


def test_given_missing_secret_when_getting_then_not_found(vault: Vault) -> None:
    with pytest.raises(NotFound) as caught:
        vault.store().get_secret("never-set")

    assert "never-set" in caught.value.message
    assert [r.status for r in vault.emulator.requests] == [401, 404]


def test_given_deleted_secret_when_getting_then_not_found(vault: Vault) -> None:
    store = vault.store()
    store.set_secret("short-lived", "value")

    store.delete_secret("short-lived")

    with pytest.raises(NotFound, match="short-lived"):
        store.get_secret("short-lived")
    assert vault.emulator.is_soft_deleted("short-lived")


def test_given_missing_secret_when_deleting_then_no_error(vault: Vault) -> None:
    vault.store().delete_secret("never-set")

    assert vault.emulator.requests[-1].method == "DELETE"
    assert vault.emulator.requests[-1].status == 404


def test_given_soft_deleted_name_when_setting_again_then_conflict(vault: Vault) -> None:
    store = vault.store()
    store.set_secret("reused-name", "old")
    store.delete_secret("reused-name")

    try:
        store.set_secret("reused-name", "new")
    except Conflict as error:
        assert "deleted" in error.message
    except Exception as error:
        raise AssertionError(f"expected shared.errors.Conflict, got {type(error).__name__}") from error
    else:
        raise AssertionError("the vault accepted a soft-deleted name")


# -- a vault that is down, throttling or unreachable -------------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS, ids=list(OPERATIONS))
@pytest.mark.parametrize("status", [429, 503])
def test_given_vault_throttling_or_unavailable_when_calling_then_secret_store_unavailable(
    vault: Vault, operation: str, status: int
) -> None:
    if status == 429:
        vault.emulator.throttle(times=5, retry_after_seconds=30)
    else:
        vault.emulator.unavailable(times=5, retry_after_seconds=30)

    with pytest.raises(SecretStoreUnavailable) as caught:
        OPERATIONS[operation](vault.store(retry_total=0))

    assert isinstance(caught.value, ServiceUnavailable)
    assert f"status {status}" in caught.value.message
    assert caught.value.retry_after_seconds is not None
    assert len(vault.emulator.requests) == 1  # retries off: one attempt, no sleeping
    assert vault.emulator.slept == []


def test_given_persistent_503_when_sdk_retries_are_limited_then_unavailable_after_bounded_attempts(
    vault: Vault,
) -> None:
    vault.emulator.unavailable(times=10, retry_after_seconds=5)

    with pytest.raises(SecretStoreUnavailable):
        vault.store(retry_total=2).get_secret("ws-key")

    assert len(vault.emulator.requests) == 3  # the first try and two retries
    assert vault.emulator.slept == [5, 5]  # Retry-After honoured, through the transport (not slept)


def test_given_one_throttled_request_when_retry_allowed_then_sdk_waits_retry_after_and_succeeds(
    vault: Vault,
) -> None:
    store = vault.store(retry_total=1)
    store.set_secret("ws-key", "value")
    vault.emulator.throttle(times=1, retry_after_seconds=7)

    assert store.get_secret("ws-key") == "value"
    assert vault.emulator.slept == [7]
    assert [r.status for r in vault.emulator.requests[-2:]] == [429, 200]


@pytest.mark.parametrize("operation", OPERATIONS, ids=list(OPERATIONS))
def test_given_network_failure_when_calling_then_service_unavailable(vault: Vault, operation: str) -> None:
    vault.emulator.drop_connections(times=5)

    with pytest.raises(ServiceUnavailable) as caught:
        OPERATIONS[operation](vault.store(retry_total=0))

    assert isinstance(caught.value, SecretStoreUnavailable)
    assert "unreachable" in caught.value.message
    assert len(vault.emulator.requests) == 1


# -- authentication -------------------------------------------------------------------------------


def test_given_new_client_when_first_calling_then_token_is_sent_only_after_the_challenge(
    vault: Vault,
) -> None:
    store = vault.store()

    store.set_secret("ws-key", "value")
    store.get_secret("ws-key")

    first, *later = vault.emulator.requests
    assert (first.method, first.authorization, first.body, first.status) == ("PUT", None, b"", 401)
    assert [r.authorization for r in later] == [f"Bearer {TOKEN}"] * 2
    assert [r.status for r in later] == [200, 200]
    assert later[0].body  # the body withheld from the challenge request is sent with the token
    assert vault.credential.requests == [((KEY_VAULT_SCOPE,), TENANT_ID)]  # the challenge's tenant


def test_given_any_call_then_every_request_goes_to_the_vault_host_over_https(vault: Vault) -> None:
    store = vault.store()
    store.set_secret("ws-key", "value")
    store.get_secret("ws-key")
    store.delete_secret("ws-key")

    assert {r.host for r in vault.emulator.requests} == {vault.emulator.host}
    assert vault.emulator.vault_url.startswith("https://")
    assert all(r.query.get("api-version") for r in vault.emulator.requests)


def test_given_challenge_naming_another_resource_when_calling_then_token_is_never_sent() -> None:
    vault = make_vault(challenge_resource="https://vault.example.net")

    with pytest.raises(ValueError, match="does not match the requested domain"):
        vault.store().get_secret("ws-key")

    assert [r.authorization for r in vault.emulator.requests] == [None]
    assert vault.credential.requests == []


def test_given_token_rejected_by_vault_when_getting_then_failure_is_not_reported_as_missing() -> None:
    """A refused token must never look like an empty key slot (WorkspaceDirectory skips NotFound)."""
    vault = make_vault(accepted_token="another-token")

    with pytest.raises((ClientAuthenticationError, SluiceError)) as caught:
        vault.store().get_secret("ws-key")

    assert not isinstance(caught.value, NotFound)
    assert [r.status for r in vault.emulator.requests] == [401, 401]  # challenge, then the refused token


@pytest.mark.parametrize("refusal", ["token-rejected", "forbidden-by-rbac"])
def test_given_vault_refuses_the_identity_when_getting_then_sluice_error(refusal: str) -> None:
    vault = make_vault(accepted_token="another-token") if refusal == "token-rejected" else make_vault()
    if refusal == "forbidden-by-rbac":
        vault.emulator.deny_access(times=5)

    try:
        vault.store().get_secret("ws-key")
    except SluiceError as error:
        assert not isinstance(error, NotFound | ServiceUnavailable)
        assert "Key Vault" in error.message
    except Exception as error:
        raise AssertionError(f"an Azure SDK error left the adapter: {type(error).__name__}") from error
    else:
        raise AssertionError("the vault's refusal was ignored")


# -- WorkspaceDirectory over Key Vault --------------------------------------------------------------


class ManualMonotonic:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def monotonic() -> ManualMonotonic:
    return ManualMonotonic()


TTL_SECONDS = 30.0


def new_workspace(store: KeyVaultSecretStore) -> NewWorkspace:
    return create_workspace(registry=MemoryRegistry(), secrets=store, containers=MemoryRawStore())


def directory_over(store: KeyVaultSecretStore, monotonic: ManualMonotonic) -> WorkspaceDirectory:
    return WorkspaceDirectory(
        registry=MemoryRegistry(), secrets=store, cache_ttl_seconds=TTL_SECONDS, monotonic=monotonic
    )


def test_given_keys_loaded_when_asked_again_within_ttl_then_vault_is_not_called(
    vault: Vault, monotonic: ManualMonotonic
) -> None:
    store = vault.store()
    created = new_workspace(store)
    directory = directory_over(store, monotonic)
    keys = directory.list_shared_keys(created.workspace.workspace_id)
    reads = len(vault.emulator.secret_reads())

    monotonic.advance(TTL_SECONDS / 2)  # before the refresh-ahead window (the last fifth)
    again = directory.list_shared_keys(created.workspace.workspace_id)

    assert again == keys == (decode_key(created.primary_key), decode_key(created.secondary_key))
    assert reads == 2  # one read per key slot
    assert len(vault.emulator.secret_reads()) == reads


def test_given_primary_rotated_when_within_ttl_then_cached_keys_still_served(
    vault: Vault, monotonic: ManualMonotonic
) -> None:
    store = vault.store()
    created = new_workspace(store)
    directory = directory_over(store, monotonic)
    directory.list_shared_keys(created.workspace.workspace_id)

    rotate_key(secrets=store, workspace=created.workspace, which="primary")
    monotonic.advance(TTL_SECONDS / 2)

    assert directory.list_shared_keys(created.workspace.workspace_id) == (
        decode_key(created.primary_key),
        decode_key(created.secondary_key),
    )


def test_given_primary_rotated_when_ttl_elapsed_then_new_primary_and_unchanged_secondary_are_valid(
    vault: Vault, monotonic: ManualMonotonic
) -> None:
    store = vault.store()
    created = new_workspace(store)
    workspace_id = created.workspace.workspace_id
    directory = directory_over(store, monotonic)
    directory.list_shared_keys(workspace_id)

    new_primary = rotate_key(secrets=store, workspace=created.workspace, which="primary")
    monotonic.advance(TTL_SECONDS + 0.001)
    keys = directory.list_shared_keys(workspace_id)

    assert keys == (decode_key(new_primary), decode_key(created.secondary_key))
    assert decode_key(created.primary_key) not in keys
    assert vault.emulator.version_count(shared_key_secret_name(workspace_id, "primary")) == 2


def test_given_both_keys_rotated_one_after_another_then_an_agent_always_has_a_valid_key(
    vault: Vault, monotonic: ManualMonotonic
) -> None:
    store = vault.store()
    created = new_workspace(store)
    workspace_id = created.workspace.workspace_id
    directory = directory_over(store, monotonic)

    new_primary = rotate_key(secrets=store, workspace=created.workspace, which="primary")
    monotonic.advance(TTL_SECONDS + 1)
    during = directory.list_shared_keys(workspace_id)  # agents move from the secondary to the new primary
    new_secondary = rotate_key(secrets=store, workspace=created.workspace, which="secondary")
    monotonic.advance(TTL_SECONDS + 1)
    after = directory.list_shared_keys(workspace_id)

    assert during == (decode_key(new_primary), decode_key(created.secondary_key))
    assert after == (decode_key(new_primary), decode_key(new_secondary))


def test_given_vault_unavailable_when_ttl_elapsed_then_directory_raises_instead_of_dropping_keys(
    vault: Vault, monotonic: ManualMonotonic
) -> None:
    store = vault.store()
    created = new_workspace(store)
    directory = directory_over(store, monotonic)
    directory.list_shared_keys(created.workspace.workspace_id)

    vault.emulator.unavailable(times=10)
    monotonic.advance(TTL_SECONDS + 1)

    with pytest.raises(SecretStoreUnavailable):
        directory.list_shared_keys(created.workspace.workspace_id)
