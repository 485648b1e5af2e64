"""thinwire: check the claims of communication-efficient distributed training papers."""
