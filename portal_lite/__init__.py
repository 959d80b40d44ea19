"""portal_lite: the requester-facing web portal, reached only through signed links."""
