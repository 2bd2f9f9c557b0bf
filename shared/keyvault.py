"""Workspace secrets in Azure Key Vault (RBAC, the app's managed identity). SDK errors are translated
here: a missing secret is NotFound, an unreachable or throttling vault is ServiceUnavailable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretClient

from shared.errors import Conflict, NotFound, SecretStoreRejected, SecretStoreUnavailable


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except ResourceNotFoundError:
        raise
    except ResourceExistsError as error:
        raise Conflict(
            f"Key Vault refused {what}: the name is soft-deleted; recover or purge it first."
        ) from error
    except (ServiceRequestError, ServiceResponseError) as error:
        raise SecretStoreUnavailable(f"Key Vault is unreachable while {what}.") from error
    except AzureError as error:
        status = getattr(error, "status_code", None)
        if status is None or status >= 500 or status in (408, 429):
            raise SecretStoreUnavailable(f"Key Vault failed while {what} (status {status}).") from error
        # 401/403: the identity or its role is wrong. Never NotFound, which would read as "no key".
        raise SecretStoreRejected(f"Key Vault refused {what} (status {status}).") from error


class KeyVaultSecretStore:
    def __init__(self, client: SecretClient) -> None:
        self._client = client

    @classmethod
    def connect(cls, vault_uri: str, credential: TokenCredential) -> KeyVaultSecretStore:
        return cls(SecretClient(vault_url=vault_uri, credential=credential))

    def get_secret(self, name: str) -> str:
        with _translated("reading a secret"):
            try:
                value = self._client.get_secret(name).value
            except ResourceNotFoundError:
                raise NotFound(f"Secret {name} does not exist.") from None
        if value is None:
            raise NotFound(f"Secret {name} has no value.")
        return value

    def set_secret(self, name: str, value: str) -> None:
        with _translated("writing a secret"):
            self._client.set_secret(name, value, content_type="text/plain")

    def delete_secret(self, name: str) -> None:
        """Starts the vault's soft delete (purge protection keeps it recoverable); gone already is fine."""
        with _translated("deleting a secret"):
            try:
                self._client.begin_delete_secret(name)
            except ResourceNotFoundError:
                return
