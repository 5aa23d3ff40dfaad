"""The front door: HR and IdP events, the IdP's SCIM push, and bulk offboarding start cases.

Everything that arrives here is untrusted: it is size-limited, authenticated, validated and
de-duplicated before it may start or change a case. See README.md in this folder.
"""
