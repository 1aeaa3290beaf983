"""The campaign's helper modules assert too (a turn reached the customer who wrote it, the
model saw exactly what was sent, the policy is the one the checker expects): pytest rewrites
their asserts as it does a test module's, so a failure shows the values."""

import pytest

pytest.register_assert_rewrite("tests.agent.compromised.campaign", "tests.agent.compromised.audit",
                              "tests.agent.compromised.claim_audit")
