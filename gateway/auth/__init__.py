"""Authentication: sessions, tokens, Auth0 verification, callbacks, the auth service."""
