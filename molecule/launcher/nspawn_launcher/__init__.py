"""Launch systemd-nspawn test hosts for the people-counter playbooks."""
