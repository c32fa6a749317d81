"""Ansible's linear strategy run through Mitogen, or plain linear where Mitogen is missing.

Mitogen keeps one Python interpreter per host for the whole play instead of starting one per
task; the fleet's idempotent second run takes less than half the time with it. ansible.cfg
selects this strategy by name (``strategy = mitogen_linear``), so a controller without the
``mitogen`` package still runs every playbook, only slower, and says so once.
"""

from ansible.plugins.strategy.linear import StrategyModule as LinearStrategy
from ansible.utils.display import Display

try:
    import ansible_mitogen.strategy
except ImportError:
    Display().warning(
        "mitogen is not installed on the controller: running the plain linear strategy "
        "(pip install -r requirements-dev.txt for the faster one)"
    )

    class StrategyModule(LinearStrategy):
        pass

else:

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, LinearStrategy):
        pass
