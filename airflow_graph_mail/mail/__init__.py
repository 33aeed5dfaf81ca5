"""What a message is: recipients, attachments, body. No HTTP and no Airflow here."""
