"""RabbitMQ: connection parameters, topology (streams, exchanges) and inspection."""
