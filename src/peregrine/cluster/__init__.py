"""The distributed mode's tooling: generating a cluster's configuration (``generate``), its
balancer's (``haproxy``), and running a development cluster on one machine (``devcluster``)."""
