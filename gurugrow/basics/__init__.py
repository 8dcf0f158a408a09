"""What every layer above config uses: messenger identities, phone numbers, the recommended
sets, the clock, the busy-port check."""
