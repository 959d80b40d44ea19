"""SLA daemon: pure business-time clocks and policies, and the process that fires their alerts."""
