"""The HTTP routes: thin translations between HTTP and the session manager."""
