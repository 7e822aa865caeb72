import CRMSim
