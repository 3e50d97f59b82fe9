"""Sample incidents of 乌审旗 and a demo that posts them to a running system."""
