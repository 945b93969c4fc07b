"""The Peregrine agent: identity, connection to the frontends, collections and the spool."""
