"""Sandbox mode (GURUGROW_SANDBOX=1): built-in stand-ins of RetailCRM, GreenSMS and the
deduper with demo data, so the whole bot journey runs with no account anywhere."""

# Keys the stand-ins accept, defined with the sandbox settings that send them.
from gurugrow.config import SANDBOX_DEDUPE_KEY, SANDBOX_GREENSMS_TOKEN, SANDBOX_RETAILCRM_KEY

__all__ = ["SANDBOX_DEDUPE_KEY", "SANDBOX_GREENSMS_TOKEN", "SANDBOX_RETAILCRM_KEY"]
