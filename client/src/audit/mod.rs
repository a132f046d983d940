//! Auditor side: fetch, offline verification, trace, export and stats of a network audit log (to be written by the audit work).
