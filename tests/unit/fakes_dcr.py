"""In-memory ports of the Logs Ingestion core: the DCR registry and an issuer's signing keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from jwt import PyJWK

from shared.dcrs import DataCollectionRule
from shared.errors import DataCollectionRuleNotFound, InvalidToken


@dataclass
class MemoryDcrRegistry:
    rules: dict[str, DataCollectionRule] = field(default_factory=dict)
    reads: int = 0

    def get_rule(self, immutable_id: str) -> DataCollectionRule:
        self.reads += 1
        try:
            return self.rules[immutable_id]
        except KeyError:
            raise DataCollectionRuleNotFound(immutable_id) from None

    def list_rules(self, workspace_id: str) -> list[DataCollectionRule]:
        return [r for r in self.rules.values() if r.workspace_id == workspace_id]

    def create_rule(self, rule: DataCollectionRule) -> None:
        assert rule.immutable_id not in self.rules
        self.rules[rule.immutable_id] = rule


@dataclass
class StaticKeys:
    """An issuer's JWKS, already fetched."""

    keys: dict[str, PyJWK] = field(default_factory=dict)

    def signing_key(self, kid: str) -> PyJWK:
        try:
            return self.keys[kid]
        except KeyError:
            raise InvalidToken("no key with that kid") from None
