"""Stand-ins for the services the dev sandbox and the tests run next to Tributary.

``kubeapi``: a Kubernetes API peer (kmock-based) reached through an ordinary kubeconfig.
"""
