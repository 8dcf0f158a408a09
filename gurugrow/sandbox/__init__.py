"""Sandbox mode (GURUGROW_SANDBOX=1): built-in stand-ins of RetailCRM, GreenSMS and the
deduper with demo data, so the whole bot journey runs with no account anywhere."""

# Keys the stand-ins accept; the sandbox settings use them. Not secrets: sandbox only.
SANDBOX_RETAILCRM_KEY = "sandbox-retailcrm-key"
SANDBOX_GREENSMS_TOKEN = "sandbox-greensms-token"
SANDBOX_DEDUPE_KEY = "sandbox-dedupe-key"
