"""Simulation: the scripted elders (personas), scripted dialogs, the fast clock, and the local
stand-ins of remote services that have no local peer (WeCom API, SMS providers). One of each,
shared by ``tanfang demo``, ``tanfang simulate month``, ``tanfang call simulate`` and the tests.
"""
