"""Long reliability runs (`make reliability`); the default test run ignores this directory."""
