-- How many alerts Alertmanager left out of the notification (its
-- truncatedAlerts, from webhook_configs max_alerts): shown with the incident's
-- notifications, since the status of such a notification counts only the
-- alerts it kept. Notifications received before this migration show 0.
ALTER TABLE notifications ADD COLUMN truncated_alerts INTEGER NOT NULL DEFAULT 0;
