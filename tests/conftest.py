import pytest
from hypothesis import HealthCheck, settings

import fiberflow as ff

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=150
)
settings.load_profile("default")


@pytest.fixture(scope="module")
def rtl():  # type: ignore[no-untyped-def]
    """The rtl device with the default overlay, one per test module (a module may define its
    own, with other options)."""
    pytest.importorskip("fiberflow.host.devices.rtl")
    dev = ff.open("rtl")
    yield dev
    dev.close()
