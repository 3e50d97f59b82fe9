"""The duty console: the screens of every party, in the browser, on the four services' APIs."""
