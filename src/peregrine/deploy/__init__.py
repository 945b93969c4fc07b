"""Deploying and upgrading a cluster's frontends (``peregrine deploy``).

A deployment file (``deploy.yaml``, beside the generated configuration) lists the frontend
instances (host, agent and API ports, configuration, version) and the balancer in front of
them. ``pools.py`` keeps the balancer's pools current (HAProxy's runtime API, or an nginx
include file and a reload); ``uptests.py`` checks a new instance before it gets traffic;
``rolling.py`` replaces the instances in batches and puts the old ones back when a batch
fails; ``launcher.py`` starts and stops instance processes on this host.
"""
