"""SAM 3 Agent (facebookresearch/sam3 ``sam3/agent/``) as the harness model ``sam3-agent``: see ``adapter``."""
