"""notification-service: devices, notifications sent and tracked per delivery, batches, inboxes."""
