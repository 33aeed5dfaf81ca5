# In Exchange Online PowerShell (Connect-ExchangeOnline) as an Organization Management member.
# $AppId: the app's client id; $ObjectId: its service principal's Object ID (Enterprise applications).
New-ServicePrincipal -AppId $AppId -ObjectId $ObjectId -DisplayName "Airflow Graph Mail"

# The mailboxes Airflow may send from: those whose CustomAttribute1 is "airflow-sender".
New-ManagementScope -Name "Airflow senders" -RecipientRestrictionFilter "CustomAttribute1 -eq 'airflow-sender'"
Set-Mailbox -Identity reports@contoso.com -CustomAttribute1 "airflow-sender"

New-ManagementRoleAssignment -App $ObjectId -Role "Application Mail.Send" -CustomResourceScope "Airflow senders"
New-ManagementRoleAssignment -App $ObjectId -Role "Application Mail.ReadWrite" -CustomResourceScope "Airflow senders"

# InScope True for a sender, False for any other mailbox.
Test-ServicePrincipalAuthorization -Identity $ObjectId -Resource reports@contoso.com
