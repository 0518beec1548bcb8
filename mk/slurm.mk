# cellextract: the Slurm test target (included from the Makefile: `include mk/slurm.mk`).
#
#   make test-slurm     install Slurm (apt, needs root) if missing, start the private single-node
#                       cluster (tests/cluster/slurm.sh), run the tests marked `slurm`, and always
#                       stop the cluster again; the exit code is pytest's.
#
# Uses $(BIN) from the main Makefile (default .venv/bin) and depends on its `install` target.
SLURM_SH        ?= tests/cluster/slurm.sh
SLURM_CONF_PATH ?= $(or $(CELLEXTRACT_SLURM_DIR),/tmp/cellextract-slurm)/etc/slurm.conf
PYTEST_SLURM    ?= -m slurm tests/cluster

.PHONY: test-slurm slurm-start slurm-stop slurm-status

test-slurm: install
	$(SLURM_SH) install
	$(SLURM_SH) start || { $(SLURM_SH) stop; exit 1; }
	SLURM_CONF=$(SLURM_CONF_PATH) CELLEXTRACT_SLURM_REQUIRED=1 \
	  $(BIN)/python -m pytest $(PYTEST_SLURM); rc=$$?; \
	  $(SLURM_SH) stop; exit $$rc

slurm-start:
	$(SLURM_SH) install
	$(SLURM_SH) start

slurm-stop:
	$(SLURM_SH) stop

slurm-status:
	$(SLURM_SH) status
