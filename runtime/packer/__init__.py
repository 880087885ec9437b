"""The packer: renders a page plan as byte-deterministic request bytes."""
